-- schema.sql: the tables the gateway reads (users, companies), for development and tests.
-- Applied only by the explicit `migrate` subcommand; every statement is idempotent.

-- gen_random_uuid() is built into PostgreSQL 13 and later; only older servers need pgcrypto.
DO $$
BEGIN
    IF to_regprocedure('gen_random_uuid()') IS NULL THEN
        CREATE EXTENSION IF NOT EXISTS pgcrypto;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS companies (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    created_at timestamptz DEFAULT now(),
    is_active  boolean DEFAULT true
);

CREATE TABLE IF NOT EXISTS users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id      uuid NULL REFERENCES companies (id),
    email           text UNIQUE NOT NULL,
    hashed_password text NOT NULL,
    full_name       text,
    role            text DEFAULT 'user',
    created_at      timestamptz DEFAULT now(),
    updated_at      timestamptz DEFAULT now(),
    last_login      timestamptz,
    is_active       boolean DEFAULT true
);

-- Every email lookup is lower(email) = lower($1): this index serves it and forbids two
-- accounts whose emails differ only in letter case.
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email));

-- Contract v2 (tenant isolation). Expand-only: nothing below drops, renames or narrows what
-- the previous gateway reads, so it keeps running on a migrated database.

-- A token whose iat is earlier than this (whole seconds) is refused; NULL revokes nothing.
ALTER TABLE users ADD COLUMN IF NOT EXISTS tokens_valid_after timestamptz NULL;

CREATE TABLE IF NOT EXISTS company_invitations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id  uuid NOT NULL REFERENCES companies (id),
    email       text NOT NULL,
    role        text NOT NULL DEFAULT 'user',
    created_by  uuid NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz NULL,
    revoked_at  timestamptz NULL
);
-- Open invitations are looked up by email at every login of a user without a company.
CREATE INDEX IF NOT EXISTS company_invitations_open_email
    ON company_invitations (lower(email)) WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- One company per email domain (stored in lower case).
CREATE TABLE IF NOT EXISTS company_domains (
    domain     text PRIMARY KEY CHECK (domain = lower(domain)),
    company_id uuid NOT NULL REFERENCES companies (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every gateway LISTENs on this channel and drops its cached state of the row named in the
-- payload ('users:<id>' or 'companies:<id>'), so a change made anywhere (a gateway, the
-- CLI, plain SQL) reaches every replica within a second instead of a cache TTL.
CREATE OR REPLACE FUNCTION atenex_gateway_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atenex_gateway_changes', TG_TABLE_NAME || ':' || OLD.id::text);
    RETURN NULL;
END
$$;

-- Only the columns the gateway caches: last_login is written at every login and must not
-- empty the caches of every replica.
DROP TRIGGER IF EXISTS atenex_gateway_users_changed ON users;
CREATE TRIGGER atenex_gateway_users_changed
    AFTER UPDATE OF is_active, company_id, role, tokens_valid_after, email, full_name ON users
    FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
       OR OLD.company_id IS DISTINCT FROM NEW.company_id
       OR OLD.role IS DISTINCT FROM NEW.role
       OR OLD.tokens_valid_after IS DISTINCT FROM NEW.tokens_valid_after
       OR OLD.email IS DISTINCT FROM NEW.email
       OR OLD.full_name IS DISTINCT FROM NEW.full_name)
    EXECUTE FUNCTION atenex_gateway_notify_change();
DROP TRIGGER IF EXISTS atenex_gateway_users_deleted ON users;
CREATE TRIGGER atenex_gateway_users_deleted
    AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION atenex_gateway_notify_change();

DROP TRIGGER IF EXISTS atenex_gateway_companies_changed ON companies;
CREATE TRIGGER atenex_gateway_companies_changed
    AFTER UPDATE OF is_active ON companies
    FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active)
    EXECUTE FUNCTION atenex_gateway_notify_change();
DROP TRIGGER IF EXISTS atenex_gateway_companies_deleted ON companies;
CREATE TRIGGER atenex_gateway_companies_deleted
    AFTER DELETE ON companies
    FOR EACH ROW EXECUTE FUNCTION atenex_gateway_notify_change();

-- Least privilege for the gateway's own role. The shipped ConfigMap connects as
-- atenex_gateway, never as the owner of these tables; create it once as a superuser:
--   CREATE ROLE atenex_gateway LOGIN PASSWORD '...';
-- and every `migrate` from then on (run as the owner) grants it exactly what the gateway
-- does: read the tenancy tables, sign users in and move them between companies, administer
-- companies, users, invitations and domains. It gets no DELETE on users or companies (they
-- are deactivated, never deleted), no TRUNCATE, no DDL, and cannot rewrite a user's id,
-- email or creation time. LISTEN needs no grant, and CONNECT and USAGE on the public schema
-- are PUBLIC's by default (grant them too where PUBLIC's were revoked).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'atenex_gateway') THEN
        GRANT SELECT, INSERT ON users TO atenex_gateway;
        GRANT UPDATE (company_id, updated_at, last_login, tokens_valid_after, hashed_password,
                      is_active, role, full_name) ON users TO atenex_gateway;
        GRANT SELECT, INSERT ON companies TO atenex_gateway;
        GRANT UPDATE (name, is_active) ON companies TO atenex_gateway;
        GRANT SELECT, INSERT ON company_invitations TO atenex_gateway;
        GRANT UPDATE (accepted_at, revoked_at) ON company_invitations TO atenex_gateway;
        GRANT SELECT, INSERT, UPDATE, DELETE ON company_domains TO atenex_gateway;
    END IF;
END
$$;
