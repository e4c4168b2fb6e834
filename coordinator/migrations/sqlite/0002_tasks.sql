-- Running the bridged tasks: the scheduler's columns, the spec branch and its pull request,
-- and what a project needs to push and open pull requests (SQLite).

ALTER TABLE specs ADD COLUMN branch TEXT;
ALTER TABLE specs ADD COLUMN pull_request_url TEXT;
ALTER TABLE specs ADD COLUMN pull_request_number INTEGER;
-- When the pull request (or the branch report) may be tried next; a lease while one is tried.
ALTER TABLE specs ADD COLUMN publish_after_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE specs ADD COLUMN publish_attempts INTEGER NOT NULL DEFAULT 0;

ALTER TABLE projects ADD COLUMN github_api_url TEXT;
ALTER TABLE projects ADD COLUMN git_token TEXT;

-- A ready task is not claimed before this time (the backoff after a failed attempt).
ALTER TABLE tasks ADD COLUMN not_before_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN claimed_ms INTEGER;
ALTER TABLE tasks ADD COLUMN finished_ms INTEGER;

CREATE INDEX tasks_status ON tasks (status, not_before_ms);
CREATE INDEX tasks_spec ON tasks (spec_id);
CREATE INDEX task_deps_depends_on ON task_deps (depends_on);
CREATE INDEX sandboxes_task ON sandboxes (task_id);
