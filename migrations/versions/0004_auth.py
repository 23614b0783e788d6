"""API authentication: the people (``api_users``) and machines (``api_clients``) that may
ask ``POST /v1/token`` for a token.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Only Argon2id hashes are stored (the CHECK refuses anything else, a plain password
included). Scopes are the API's own (``windpark.credentials.Scope``); a new scope
needs a migration that widens the CHECK. The analyst role gets nothing here: these
tables hold secrets' hashes, and 0003 grants it named tables only.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCOPES = "ARRAY['telemetry:read', 'readings:write', 'alerts:manage', 'admin']"
NAME = "'^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'"
ARGON2ID = "'$argon2id$%'"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE api_users (
            username        text NOT NULL,
            password_hash   text NOT NULL,
            scopes          text[] NOT NULL DEFAULT '{{}}',
            disabled        boolean NOT NULL DEFAULT false,
            created_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_api_users PRIMARY KEY (username),
            CONSTRAINT ck_api_users_username CHECK (username ~ {NAME}),
            CONSTRAINT ck_api_users_password_hash CHECK (password_hash LIKE {ARGON2ID}),
            CONSTRAINT ck_api_users_scopes CHECK (scopes <@ {SCOPES})
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE api_clients (
            client_id       text NOT NULL,
            secret_hash     text NOT NULL,
            scopes          text[] NOT NULL DEFAULT '{{}}',
            -- A client bound to a turbine may send that turbine's readings only.
            turbine_id      text,
            disabled        boolean NOT NULL DEFAULT false,
            created_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_api_clients PRIMARY KEY (client_id),
            CONSTRAINT fk_api_clients_turbine_id_turbines
                FOREIGN KEY (turbine_id) REFERENCES turbines (turbine_id),
            CONSTRAINT ck_api_clients_client_id CHECK (client_id ~ {NAME}),
            CONSTRAINT ck_api_clients_secret_hash CHECK (secret_hash LIKE {ARGON2ID}),
            CONSTRAINT ck_api_clients_scopes CHECK (scopes <@ {SCOPES}),
            CONSTRAINT ck_api_clients_turbine_binding
                CHECK (turbine_id IS NULL OR 'readings:write' = ANY (scopes))
        )
        """
    )
    op.execute("CREATE INDEX ix_api_clients_turbine_id ON api_clients (turbine_id)")
    # Nobody but the owner (the API's role) reads hashes, whatever default privileges say.
    op.execute("REVOKE ALL ON api_users, api_clients FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP TABLE api_clients")
    op.execute("DROP TABLE api_users")
