-- Replicas that record they are alive, so a live one takes over the waiting standbys of one
-- unseen past a limit.

-- One coordinator replica, by its `--replica-id`. `provider` is its provider's kind,
-- `provider_scope` where that provider's sandboxes live as another replica's provider would
-- name it (the same scope: it can watch and stop them), NULL when no other replica can manage
-- them. `started_ms` is set at each start, `seen_ms` at each heartbeat. Additive: a replica
-- of the previous release neither reads nor writes it (and is never taken over: it has no row).
CREATE TABLE replicas (
    id              TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    provider_scope  TEXT,
    started_ms      BIGINT NOT NULL,
    seen_ms         BIGINT NOT NULL
);
CREATE INDEX replicas_seen ON replicas (seen_ms);
