//! The omoi worker: the spec state machine, its evaluators, the agent loop and the event sender.

pub mod agent;
pub mod checkpoint;
pub mod cli;
pub mod cli_agent;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod formats;
pub mod inbox;
pub mod init;
pub mod llm;
pub mod machine;
pub mod process;
pub mod prompts;
pub mod run;
pub mod secrets;
pub mod skill;
pub mod standby;
pub mod task;
pub mod tls;
