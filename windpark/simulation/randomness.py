"""Counter-based randomness: every random number is a pure function of a key and a counter.

A sequential generator would make a reading depend on how many numbers were drawn
before it: on which other turbines share the process, on when the process started, on
whether the block was simulated in one piece or step by step. Hashing (key, counter)
instead makes the park's weather a function of (seed, time) and a turbine's noise a
function of (seed, turbine_id, time), so one process per turbine and one process for
the whole park produce the same numbers.

Per-turbine values use only integer operations, +, -, *, / and sqrt, which IEEE 754
rounds exactly: numpy's vectorised transcendental functions may round an element
differently depending on where it falls in a SIMD register, that is on the array's
length. Park-wide values (one per timestamp) may use them freely.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MUL1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MUL2: Final = np.uint64(0x94D049BB133111EB)
_S27: Final = np.uint64(27)
_S30: Final = np.uint64(30)
_S31: Final = np.uint64(31)
_S11: Final = np.uint64(11)
_S16: Final = np.uint64(16)
_S32: Final = np.uint64(32)
_LOW16: Final = np.uint64(0xFFFF)
_LOW32: Final = np.uint64(0xFFFFFFFF)
_SQRT3: Final = 3.0**0.5


def stable_key(*parts: object) -> int:
    """A 64-bit key from its parts, the same in every process (unlike ``hash()``)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def keys_array(keys: list[int]) -> U64:
    return np.array(keys, dtype=np.uint64)


def _finalize(z: U64) -> U64:
    # SplitMix64's finaliser: a bijection on 64 bits with full avalanche.
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


def hash64(keys: U64, counters: I64) -> U64:
    """Random bits for each (key, counter) pair; the shapes broadcast."""
    c = np.asarray(counters, dtype=np.int64).view(np.uint64)
    return _finalize(_finalize(c ^ keys) + _GOLDEN)


def uniform(keys: U64, counters: I64) -> F64:
    """Uniform on [0, 1), 53 bits."""
    bits = hash64(keys, counters) >> _S11
    return bits.astype(np.float64) * 2.0**-53


def bounded_normal(keys: U64, counters: I64) -> F64:
    """Mean 0, variance 1, within +-sqrt(12): the sum of four 16-bit uniforms.

    Close enough to a normal for measurement noise, bounded so that noise can never push
    a value past a physical limit, and computed with exact arithmetic only.
    """
    h = hash64(keys, counters)
    total = (h & _LOW16).astype(np.float64)
    total += ((h >> _S16) & _LOW16).astype(np.float64)
    total += ((h >> _S32) & _LOW16).astype(np.float64)
    total += (h >> np.uint64(48)).astype(np.float64)
    # Each part is uniform on {0..65535}: shift to the centre of its cell, then scale.
    return ((total + 2.0) / 65536.0 - 2.0) * _SQRT3


def gaussian(keys: U64, counters: I64) -> F64:
    """Standard normal by Box-Muller from one 64-bit hash (park-wide values only)."""
    h = hash64(keys, counters)
    u1 = ((h >> _S32).astype(np.float64) + 0.5) * 2.0**-32
    u2 = (h & _LOW32).astype(np.float64) * 2.0**-32
    result: F64 = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return result


def _bspline_weights(frac: F64) -> tuple[F64, F64, F64, F64, F64]:
    """Uniform cubic B-spline weights of the four knots around ``frac``, and their norm."""
    u = frac
    u2 = u * u
    u3 = u2 * u
    w0 = (1.0 - u) * (1.0 - u) * (1.0 - u) / 6.0
    w1 = (3.0 * u3 - 6.0 * u2 + 4.0) / 6.0
    w2 = (-3.0 * u3 + 3.0 * u2 + 3.0 * u + 1.0) / 6.0
    w3 = u3 / 6.0
    norm: F64 = np.sqrt(w0 * w0 + w1 * w1 + w2 * w2 + w3 * w3)
    return w0, w1, w2, w3, norm


def smooth_noise(keys: U64, t_ms: I64, spacing_ms: int, *, exact_gaussian: bool) -> F64:
    """A smooth stationary process with unit variance, shape (len(t_ms), len(keys)).

    Random values at knots every ``spacing_ms`` are blended with cubic B-spline weights
    and divided by the weights' norm, so the variance is exactly 1 at every instant and
    the value at any time needs only the four knots around it: random access in time,
    no state. ``exact_gaussian`` draws Gaussian knots (the result is then exactly
    Gaussian); otherwise the knots are ``bounded_normal``.
    """
    knot = t_ms // spacing_ms
    frac = (t_ms - knot * spacing_ms).astype(np.float64) / float(spacing_ms)
    draw = gaussian if exact_gaussian else bounded_normal
    first = int(knot.min()) - 1
    span = int(knot.max()) + 3 - first
    if span <= 4 * len(t_ms) + 8:
        # Dense: each knot is drawn once and shared by the samples around it.
        table = draw(keys[np.newaxis, :], np.arange(first, first + span, dtype=np.int64)[:, None])
        base = knot - 1 - first
        g = [table[base + i] for i in range(4)]
    else:
        # Samples further apart than the knots: draw each sample's four knots.
        g = [draw(keys[np.newaxis, :], (knot - 1 + i)[:, None]) for i in range(4)]
    w0, w1, w2, w3, norm = _bspline_weights(frac)
    value = w0[:, None] * g[0] + w1[:, None] * g[1] + w2[:, None] * g[2] + w3[:, None] * g[3]
    result: F64 = value / norm[:, None]
    return result


@cache
def _scale_keys(count: int) -> U64:
    return keys_array([stable_key("scale", index) for index in range(count)])


# Up to this many instants, all scales are computed in one pass: one reading at a time,
# numpy's per-call overhead outweighs the work.
_FUSED_MAX_ROWS: Final = 16


def multiscale_noise(
    keys: U64, t_ms: I64, scales: tuple[tuple[int, float], ...], *, exact_gaussian: bool
) -> F64:
    """A weighted sum of ``smooth_noise`` at several time scales, unit variance.

    ``scales`` holds (knot spacing in ms, weight); the weights are normalised. Each
    scale draws knots of its own (the key is combined with the scale's).
    """
    norm = sum(w * w for _, w in scales) ** 0.5
    scale_keys = _scale_keys(len(scales))
    if len(t_ms) > _FUSED_MAX_ROWS:
        parts = [
            smooth_noise(keys ^ scale_keys[index], t_ms, spacing_ms, exact_gaussian=exact_gaussian)
            for index, (spacing_ms, _) in enumerate(scales)
        ]
    else:
        # The same arithmetic as smooth_noise, for every scale at once: (T, S, K).
        spacing = np.array([spacing_ms for spacing_ms, _ in scales], dtype=np.int64)
        knot = t_ms[:, None] // spacing[None, :]
        frac = (t_ms[:, None] - knot * spacing[None, :]).astype(np.float64) / spacing.astype(
            np.float64
        )[None, :]
        draw = gaussian if exact_gaussian else bounded_normal
        scaled_keys = (keys[None, :] ^ scale_keys[:, None])[None, :, :]
        g = [draw(scaled_keys, (knot - 1 + i)[:, :, None]) for i in range(4)]
        w0, w1, w2, w3, wnorm = _bspline_weights(frac)
        value = (
            w0[..., None] * g[0]
            + w1[..., None] * g[1]
            + w2[..., None] * g[2]
            + w3[..., None] * g[3]
        ) / wnorm[..., None]
        parts = [value[:, index, :] for index in range(len(scales))]
    total: F64 | None = None
    for part, (_, weight) in zip(parts, scales, strict=True):
        scaled = part * (weight / norm)
        total = scaled if total is None else total + scaled
    assert total is not None
    return total
