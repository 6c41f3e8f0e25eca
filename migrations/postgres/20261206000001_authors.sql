-- History people can read (issue 15).
-- Who made each op-log row: the token's subject when access control is on, otherwise the name
-- its client publishes in awareness (`user.name`); NULL when unknown.
ALTER TABLE ops ADD COLUMN author TEXT;
-- The Yjs ids each row inserted (yrs' IdSet, v1 encoding), so blame finds the row that typed each
-- char without decoding updates. NULL for rows written before this migration (decoded then).
ALTER TABLE ops ADD COLUMN inserted BYTEA;
-- Yjs client ids to authors, learned from awareness and tokens: blame attributes text whose row
-- names no author (it came before its client's name did) by the client that typed it.
CREATE TABLE doc_authors (
    doc_id    TEXT   NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    client_id BIGINT NOT NULL,
    author    TEXT   NOT NULL,
    PRIMARY KEY (doc_id, client_id)
);
-- Named versions: the text is kept with the name, so a name outlives the op-log rows and
-- snapshots that could rebuild it.
CREATE TABLE named_versions (
    doc_id     TEXT   NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    text       TEXT   NOT NULL,
    author     TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (doc_id, name)
);
