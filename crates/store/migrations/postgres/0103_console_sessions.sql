-- The web console's sessions, in the store's database so that every replica sees them. The
-- browser's cookie holds a random session id; only its SHA-256 is kept here, so a copy of this
-- table signs nobody in. Nothing here is derived from the log: a rebuild leaves it alone.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    -- The principal, as the credential it was signed in with made it.
    subject TEXT NOT NULL,
    -- What the header shows: the person's name from the identity provider, or the key's name.
    display_name TEXT NOT NULL,
    -- Role names, comma-separated.
    roles TEXT NOT NULL,
    contractor_id TEXT,
    -- The token every form that changes something must carry.
    csrf_token TEXT NOT NULL,
    -- Unix seconds: sign-in (for the absolute expiry) and last use (for the idle expiry).
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE INDEX console_sessions_by_last_seen ON console_sessions (last_seen_at);

-- OpenID Connect sign-ins under way: between the redirect to the identity provider and its
-- callback, by the SHA-256 of the `state` sent, with the nonce and PKCE verifier to check the
-- answer with. Each is used once.
CREATE TABLE console_sign_ins (
    state_hash TEXT PRIMARY KEY NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
