-- Starting tasks cheaply (PostgreSQL).

-- The part of the final spec a task works from (the requirements it serves in full and the
-- design components serving them, as JSON), cut by the bridge so starting a task does not read
-- the whole final spec. NULL for tasks bridged before this column existed.

ALTER TABLE tasks ADD COLUMN spec_slice TEXT;

-- The claim reads ready tasks in claim order and stops at the first that may run, instead of
-- sorting every ready task; "are all of a spec's tasks completed" reads the index only.
CREATE INDEX tasks_claim_order ON tasks (status, created_ms, spec_id, spec_task_id);
CREATE INDEX tasks_spec_status ON tasks (spec_id, status);
DROP INDEX tasks_spec;
