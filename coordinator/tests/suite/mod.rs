//! The suites, each run on every backend of `support::backends`.

mod auth;
mod cli;
mod health;
mod ingest;
mod liveness;
mod local_provider;
mod messages;
mod projects;
mod specs;
mod stream;
mod support;
mod worker_e2e;
