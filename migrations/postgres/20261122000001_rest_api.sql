-- The REST API (issue 4).
-- Deleted documents keep their row as a tombstone (deleted_ms set, ops and snapshots dropped),
-- so an id is never handed out or served again.
ALTER TABLE documents ADD COLUMN deleted_ms BIGINT;
-- The document's version (its last op-log sequence number) and length in chars as of the last
-- commit, so listing and metadata never load a document.
ALTER TABLE documents ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN length_chars BIGINT NOT NULL DEFAULT 0;
-- Chars each update inserted and deleted, measured as the actor applied it (history);
-- NULL for rows written before this migration (computed by replay when asked for).
ALTER TABLE ops ADD COLUMN chars_inserted BIGINT;
ALTER TABLE ops ADD COLUMN chars_deleted BIGINT;
