-- Cluster (issue 13): every node may write every document, so sequence numbers are given out by
-- the documents row inside each commit. `batch` names the commit that wrote a row, so a retry
-- after an ambiguous failure (connection lost around COMMIT) finds its rows instead of writing
-- them twice. NULL for rows written before this migration.
ALTER TABLE ops ADD COLUMN batch TEXT;
