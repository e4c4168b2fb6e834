-- Quotas per sandbox: the bytes of event data it has stored, counted as its batches arrive.
ALTER TABLE sandboxes ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;

-- A project's secret worker variables, as JSON of name to sealed value (enc:v1:…); the git
-- token column holds a sealed value too from now on (a token stored before stays readable).
ALTER TABLE projects ADD COLUMN worker_secrets TEXT;
