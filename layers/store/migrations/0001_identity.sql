-- Users, groups, keys, model access records and the admin audit log. Written for SQLite;
-- for Postgres the store swaps the one dialect difference (the audit id, see `sql/mod.rs`).
-- `meta.version` moves with every write, in the write's transaction: the processes that
-- share the database poll it and reload what changed.
CREATE TABLE meta (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO meta (id, version) VALUES (1, 0);

CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    rate_limit TEXT,
    budget TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE user_groups (
    user_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (user_id, group_id)
);

-- A key is kept as its SHA-256 only; revoked keys stay (the audit and the key list name them).
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked BIGINT NOT NULL DEFAULT 0,
    budget TEXT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE models (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    access TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
);
