-- Several coordinators on one database.

-- The replica whose provider spawned the sandbox (it sets the handle): a "not found" from a
-- provider counts only on that replica; any other judges the sandbox by its silence. NULL for
-- sandboxes spawned before this column existed. Additive: a replica on the previous schema
-- neither reads nor writes it.
ALTER TABLE sandboxes ADD COLUMN replica_id TEXT;
