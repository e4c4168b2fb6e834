//! The suites, each run on every backend of `support::backends`.

mod auth;
mod claims;
mod cli;
mod docker;
mod docker_faults;
mod docker_secrets;
mod docker_support;
mod health;
mod ingest;
mod liveness;
mod local_provider;
mod messages;
mod projects;
mod pull_requests;
mod scheduler;
mod specs;
mod stream;
mod support;
mod task_support;
mod tasks_e2e;
mod worker_e2e;
