"""API secrets for a local checkout (``windpark setup`` in the local and test environments).

Makes what ``make run`` needs to be secure without a manual step: a random JWT
signing key in ``var/secrets/api/jwt.key`` and an ``admin`` API user whose password is
in ``var/secrets/api/admin-password`` (both files 0600, the folder git-ignored).
Existing files are kept, so tokens survive a second ``make run``; the admin user's
password is set to the file's when they differ (the file is the local truth).

Outside local and test nothing is generated: production keys come from the
environment or a mounted file, and users from ``windpark users add``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

import asyncpg

from windpark import credentials
from windpark.credentials import Scope
from windpark.settings import ApiAuthSettings, DatabaseSettings, Environment

log = logging.getLogger("windpark.setup")

ADMIN_USER = "admin"


def ensure_secret_file(path: Path, make: str) -> str:
    """The file's content; if there is no file, ``make`` written to a new one (0600).

    Created with O_EXCL, so two set-ups racing end up with the same secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        # No newline: `curl --data-urlencode password@FILE` sends the file as it is.
        out.write(make)
    return make


async def ensure_local_api_credentials(
    db: DatabaseSettings, api: ApiAuthSettings, environment: Environment
) -> None:
    if environment not in ("local", "test"):
        log.info("API: no secrets generated in %s; see docs/security.md", environment)
        return
    if api.jwt_key is None:
        ensure_secret_file(api.jwt_key_file, secrets.token_urlsafe(48))
    password = ensure_secret_file(api.admin_password_file, credentials.new_secret())
    conn = await asyncpg.connect(db.dsn())
    try:
        user = await credentials.get_user(conn, ADMIN_USER)
        if user is None:
            hashed = await asyncio.to_thread(credentials.hash_secret, password)
            await credentials.add_user(conn, ADMIN_USER, hashed, [Scope.ADMIN])
            log.info("API user %r created; password in %s", ADMIN_USER, api.admin_password_file)
        else:
            matches, _ = await asyncio.to_thread(credentials.verify, password, user.secret_hash)
            if not matches:
                hashed = await asyncio.to_thread(credentials.hash_secret, password)
                await credentials.set_user_password(conn, ADMIN_USER, hashed)
                log.info("API user %r: password reset to %s", ADMIN_USER, api.admin_password_file)
    finally:
        await conn.close()
