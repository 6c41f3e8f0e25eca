-- Blame segments (issue 15): the Yjs ids and authors of the op-log rows in (after_seq, upto_seq],
-- encoded compactly, written with each snapshot, so the first blame of a document reads a few
-- blobs instead of every row.
CREATE TABLE blame_segments (
    doc_id    TEXT   NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    after_seq BIGINT NOT NULL,
    upto_seq  BIGINT NOT NULL,
    data      BYTEA  NOT NULL,
    PRIMARY KEY (doc_id, upto_seq)
);
