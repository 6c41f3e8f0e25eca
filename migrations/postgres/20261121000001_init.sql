-- Documents, the op log (one row per applied update) and snapshots (compacted state).
-- Times are Unix milliseconds so the same queries run on PostgreSQL and SQLite.
CREATE TABLE documents (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE ops (
    doc_id      TEXT   NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    update_v1   BYTEA  NOT NULL,
    received_ms BIGINT NOT NULL,
    origin      TEXT,
    PRIMARY KEY (doc_id, seq)
);

CREATE TABLE snapshots (
    doc_id      TEXT   NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL, -- covers every op of the document with seq <= this
    state_v1    BYTEA  NOT NULL,
    created_ms  BIGINT NOT NULL,
    crc32       BIGINT NOT NULL,
    PRIMARY KEY (doc_id, seq)
);
