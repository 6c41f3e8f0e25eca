-- Token revocation (issue 8): the ids (`jti`) of revoked access tokens, with their tokens'
-- expiry (Unix seconds) so rows can be pruned once the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_ms BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
