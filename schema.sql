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
