//! Integration tests of the worker, one module per area.

mod agent;
mod cli;
mod cli_agent_runs;
mod cli_agent_secrets;
mod cli_agent_tasks;
mod cli_agents;
mod common;
mod events;
mod formats;
mod layers;
mod providers;
mod seam;
mod secrets;
mod spec;
mod standby;
mod task;
