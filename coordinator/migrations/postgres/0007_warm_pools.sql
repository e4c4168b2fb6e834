-- Warm pools: standby sandboxes started in advance, each waiting for an assignment.

-- One standby sandbox of a pool. `pool` is the image it runs ('' = the provider's default),
-- `replica_id` the coordinator that spawned it (and keeps it: liveness, refill). Its pool
-- credential is stored as SHA-256, like tokens. States: `starting` (spawned, not yet heard),
-- `idle` (registered, waiting), `claimed` (taken by one launch: a single UPDATE from `idle`),
-- `assigned` (its assignment is ready), `delivered` (fetched, once: it is now the sandbox
-- `sandbox_id`), `dead` (ended before it was delivered). `assignment` is the sealed
-- environment document, cleared by the statement that delivers it. Additive: a replica of the
-- previous release neither reads nor writes it.
CREATE TABLE standby_sandboxes (
    id             TEXT PRIMARY KEY,
    pool           TEXT NOT NULL,
    provider       TEXT NOT NULL,
    replica_id     TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    handle         TEXT,
    state          TEXT NOT NULL,
    assignment     TEXT,
    sandbox_id     TEXT,
    reason         TEXT,
    created_ms     BIGINT NOT NULL,
    registered_ms  BIGINT,
    seen_ms        BIGINT NOT NULL,
    claimed_ms     BIGINT
);
CREATE INDEX standby_sandboxes_idle ON standby_sandboxes (provider, pool, state, registered_ms);
CREATE INDEX standby_sandboxes_replica ON standby_sandboxes (replica_id, state);
