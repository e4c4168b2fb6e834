//! The suites, each run on every backend of `common::backends`; `common` holds what they share.

mod auth;
mod claims;
mod cli;
mod common;
mod dashboard;
mod docker;
mod docker_faults;
mod health;
mod ingest;
mod liveness;
mod local_provider;
mod messages;
mod projects;
mod pull_requests;
mod review;
mod scheduler;
mod schema;
mod specs;
mod stream;
mod tasks_e2e;
mod worker_e2e;
