//! Integration tests of the worker, one module per area.

mod agent;
mod cli;
mod events;
mod layers;
mod providers;
mod seam;
mod secrets;
mod spec;
mod task;
