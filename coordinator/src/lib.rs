//! The omoi coordinator: stores specs, tasks and events, spawns sandboxes, serves the HTTP API,
//! and the `omoi` client CLI.

pub mod api;
pub mod app;
pub mod cli;
pub mod dashboard;
pub mod error;
pub mod execution;
pub mod github;
pub mod hub;
pub mod ingest;
pub mod launch;
#[cfg(test)]
mod layers;
pub mod liveness;
pub mod metrics;
pub mod model;
pub mod pool;
pub mod presence;
pub mod pull_request;
pub mod relay;
pub mod repo;
pub mod review;
pub mod sandbox;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod store;
pub mod task_context;
pub mod text;
pub mod throttle;
pub mod token;
pub mod wake;

pub use app::{AppState, Settings};
pub use error::{Error, Result};
pub use server::{router, serve};
