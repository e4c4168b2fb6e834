-- The coordinator's tables (SQLite). Times are milliseconds since the Unix epoch; JSON is TEXT.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    user_id     TEXT REFERENCES users (id),
    sandbox_id  TEXT,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER
);
CREATE INDEX tokens_sandbox ON tokens (sandbox_id);

CREATE TABLE projects (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id),
    name                TEXT NOT NULL,
    repo_url            TEXT NOT NULL,
    base_branch         TEXT NOT NULL,
    validation_command  TEXT,
    provider            TEXT NOT NULL,
    image               TEXT,
    worker_env          TEXT NOT NULL,
    created_ms          INTEGER NOT NULL
);
CREATE INDEX projects_user ON projects (user_id);

CREATE TABLE specs (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    user_id        TEXT NOT NULL REFERENCES users (id),
    title          TEXT NOT NULL,
    description    TEXT NOT NULL,
    status         TEXT NOT NULL,
    current_phase  TEXT,
    error          TEXT,
    final_spec     TEXT,
    stop_after     TEXT,
    recoveries     INTEGER NOT NULL DEFAULT 0,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);
CREATE INDEX specs_user ON specs (user_id, created_ms);
CREATE INDEX specs_status ON specs (status);

CREATE TABLE spec_phases (
    spec_id      TEXT NOT NULL REFERENCES specs (id),
    phase        TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    score        REAL,
    output       TEXT,
    duration_ms  INTEGER,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (spec_id, phase)
);

CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,
    spec_id     TEXT NOT NULL UNIQUE REFERENCES specs (id),
    title       TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    ticket_id     TEXT NOT NULL REFERENCES tickets (id),
    spec_id       TEXT NOT NULL REFERENCES specs (id),
    spec_task_id  TEXT NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    sandbox_id    TEXT,
    commit_sha    TEXT,
    error         TEXT,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    UNIQUE (spec_id, spec_task_id)
);

CREATE TABLE task_deps (
    task_id     TEXT NOT NULL REFERENCES tasks (id),
    depends_on  TEXT NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, depends_on)
);

CREATE TABLE sandboxes (
    id            TEXT PRIMARY KEY,
    spec_id       TEXT REFERENCES specs (id),
    task_id       TEXT REFERENCES tasks (id),
    provider      TEXT NOT NULL,
    handle        TEXT,
    status        TEXT NOT NULL,
    start_phase   TEXT,
    context       TEXT,
    acked_seq     INTEGER NOT NULL DEFAULT 0,
    terminal      TEXT,
    reason        TEXT,
    created_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    ended_ms      INTEGER
);
CREATE INDEX sandboxes_spec ON sandboxes (spec_id);
CREATE INDEX sandboxes_status ON sandboxes (status);

CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sandbox_id   TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    cursor       INTEGER UNIQUE,
    spec_id      TEXT,
    task_id      TEXT,
    type         TEXT NOT NULL,
    v            INTEGER NOT NULL,
    at           TEXT NOT NULL,
    data         TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    UNIQUE (sandbox_id, seq)
);
CREATE INDEX events_spec_cursor ON events (spec_id, cursor);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sandbox_id  TEXT NOT NULL REFERENCES sandboxes (id),
    text        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX messages_sandbox ON messages (sandbox_id, id);
