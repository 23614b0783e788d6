"""Token revocation: a per-user and per-client token version checked on every request.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Every token carries the version of its account at the time it was issued (claim
``ver``); the API refuses a token whose version is no longer the account's. Deleting an
account, changing its password or secret, its scopes or disabling it bumps the version
(``windpark.credentials``), so every token issued before stops working at once, without
a deny-list to keep. bigint: it only ever grows.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("api_users", "api_clients")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN token_version bigint NOT NULL DEFAULT 1,"
            f" ADD CONSTRAINT ck_{table}_token_version CHECK (token_version >= 1)"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN token_version")
