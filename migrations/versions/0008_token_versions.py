"""Token revocation: a per-user and per-client token version checked on every request.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Every token carries the version of its account at the time it was issued (claim
``ver``); the API refuses a token whose version is no longer the account's. Deleting an
account, changing its password or secret, its scopes or disabling it bumps the version
(``windpark.credentials``), so every token issued before stops working at once, without
a deny-list to keep. bigint: it only ever grows.

Versions come from one sequence shared by every user and client (``token_version_seq``):
a new account and every bump take its next value, so no value is ever used twice, by
any account. A per-account counter starting at 1 would let a deleted and re-created
name (how admins reset an account) accept the old account's unexpired tokens again,
with the old tokens' scopes.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("api_users", "api_clients")
SEQUENCE = "token_version_seq"


def upgrade() -> None:
    op.execute(f"CREATE SEQUENCE {SEQUENCE} AS bigint MINVALUE 1")
    for table in TABLES:
        # A volatile default: the rows already there get a value each, all different.
        op.execute(
            f"ALTER TABLE {table}"
            f" ADD COLUMN token_version bigint NOT NULL DEFAULT nextval('{SEQUENCE}'),"
            f" ADD CONSTRAINT ck_{table}_token_version CHECK (token_version >= 1)"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN token_version")
    op.execute(f"DROP SEQUENCE {SEQUENCE}")
