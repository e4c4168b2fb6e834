//! Integration tests of the worker, one module per area.

mod agent;
mod cli;
mod events;
mod providers;
mod spec;
mod task;
