-- A project's image pull secrets (kubernetes): a JSON array of Secret names, NULL for none
-- (the server's --image-pull-secret). Additive: a replica of the previous release neither reads
-- nor writes it.
ALTER TABLE projects ADD COLUMN image_pull_secrets TEXT;
