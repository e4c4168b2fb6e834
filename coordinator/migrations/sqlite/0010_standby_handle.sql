-- A launch through a provider's own warm pool (the Kubernetes Sandbox API's SandboxClaim) learns
-- which sandbox it got and claims that sandbox's standby by its handle.
CREATE INDEX standby_sandboxes_handle ON standby_sandboxes (provider, handle);
