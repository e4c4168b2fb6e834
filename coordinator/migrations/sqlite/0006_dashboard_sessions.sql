-- Dashboard sessions and one-time sign-in links, kept on the server.

-- A browser's session (kind `session`) or a one-time sign-in link (kind `link`), stored as the
-- SHA-256 of its random id, like tokens. A session ends at `expires_ms` or when its row is
-- deleted (sign-out); a link is deleted when it is used. Additive: a replica of the previous
-- release neither reads nor writes it.
CREATE TABLE dashboard_sessions (
    hash        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_ms);
