-- History checkpoints (issue 15): snapshots kept beyond the newest ones, spaced at least
-- --history-checkpoint-ops apart, so the text at any older version is rebuilt from a nearby
-- state instead of from the start of the op log.
ALTER TABLE snapshots ADD COLUMN checkpoint BIGINT NOT NULL DEFAULT 0;
-- The first version of the change (rows by one author with no pause over 30 s) each row belongs
-- to, set at commit, so a page of grouped history reads a few rows instead of every row of its
-- changes. NULL for rows written before this migration (grouped by reading them).
ALTER TABLE ops ADD COLUMN change_start BIGINT;
