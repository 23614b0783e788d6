"""Failed logins counted per account and address pair, per account, and per address, in a
sliding window.

Three counters with three limits (OWASP's authentication cheat sheet: throttle per
account and per address separately):

- per (account, address) pair a small one (10): one address guessing one account's
  password is stopped there, and only that address is;
- per account (user name or client id) from all addresses together a much larger one
  (100): a guess spread over many addresses still meets a bound, while one address,
  held at the pair limit, cannot reach it: guessing the name ``admin`` from one place
  no longer locks the admin out everywhere. The price: a distributed guess gets up to
  that many tries per window at one account, and one with at least limit/10 addresses
  can still lock that account out for everyone (its right password answers 429 until
  the window moves);
- per address over every account a larger one (100): one address spraying guesses over
  many names is stopped.

An address that guesses one name is stopped by the pair's limit long before it reaches
its own: the other users behind the same address (a NAT, an office) keep logging in. A
refused attempt is not counted, so hammering a blocked pair adds nothing anywhere.

In memory, per process: with N API processes (uvicorn workers, replicas) an attacker
gets N times the allowance. Enough for one process behind a single-node deployment;
a fleet needs a shared counter (the database or Redis) or the proxy's own limit.

The address is the socket peer as the server reports it (``scope["client"]``):
``X-Forwarded-For`` changes it only when uvicorn trusts the sending proxy
(``WINDPARK_FORWARDED_ALLOW_IPS``), never for any client that sets the header.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

# Keys tracked at most; past it the oldest is forgotten, so that spraying many names
# costs the attacker their own limit, not the API's memory.
MAX_KEYS: Final = 100_000


class FailureLimiter:
    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float],
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def retry_after_s(self, keys: Iterable[str]) -> int | None:
        """Seconds until another attempt may be made, or None if one may be made now.

        ``max_failures`` failures within the window block the next attempt (the 11th,
        with the default 10), whatever its credentials, until the oldest leaves the window.
        """
        now = self._clock()
        waits = []
        for key in keys:
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self.max_failures:
                waits.append(failures[-self.max_failures] + self.window_s - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def record_failure(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            failures = self._recent(key, now)
            if failures is None:
                if len(self._failures) >= self._max_keys:
                    self._evict(now)
                failures = self._failures[key] = deque()
            failures.append(now)
            # Only the newest max_failures matter for the decision.
            while len(failures) > self.max_failures:
                failures.popleft()

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def withdraw(self, key: str) -> None:
        """Take back one failure of ``key`` (an attempt counted in advance that succeeded)."""
        failures = self._failures.get(key)
        if failures:
            failures.pop()
            if not failures:
                del self._failures[key]

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def _evict(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= self._max_keys:
            del self._failures[next(iter(self._failures))]


class LoginLimits:
    """The pair, the account and the address counter, each with its own limit."""

    def __init__(
        self, *, pairs: FailureLimiter, accounts: FailureLimiter, addresses: FailureLimiter
    ) -> None:
        self.pairs = pairs
        self.accounts = accounts
        self.addresses = addresses

    def _keyed(self, account: str, address: str) -> tuple[tuple[FailureLimiter, str], ...]:
        return (
            (self.pairs, _pair_key(account, address)),
            (self.accounts, account),
            (self.addresses, address),
        )

    def retry_after_s(self, account: str, address: str) -> int | None:
        waits = [
            wait
            for limiter, key in self._keyed(account, address)
            if (wait := limiter.retry_after_s([key])) is not None
        ]
        return max(waits) if waits else None

    def record_failure(self, account: str, address: str) -> None:
        for limiter, key in self._keyed(account, address):
            limiter.record_failure([key])

    def succeeded(self, account: str, address: str) -> None:
        """A login that was counted as a failure in advance succeeded: the pair starts
        afresh (that address knows the secret); the account and the address get back the
        one failure they were charged, and keep the others (an attacker's elsewhere)."""
        self.pairs.forget(_pair_key(account, address))
        self.accounts.withdraw(account)
        self.addresses.withdraw(address)


def _pair_key(account: str, address: str) -> str:
    return f"{account} {address}"


def user_key(username: str) -> str:
    return f"user:{username.lower()}"


def client_key(client_id: str) -> str:
    return f"client:{client_id.lower()}"


def address_key(address: str | None) -> str:
    return f"addr:{address or 'unknown'}"
