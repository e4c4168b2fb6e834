//! The CLI agents (Claude Code, Codex): the [`agent::CliAgent`] and the session's command line
//! (`command`), and what they run with: the gate they reach as an MCP tool
//! (`gate`, `mcp`), the model proxy that holds the real key and counts usage (`proxy`), and the
//! mappers of their output streams onto omoi's `agent.*` events (`stream`).

pub mod agent;
pub mod command;
pub mod gate;
pub mod mcp;
pub mod proxy;
pub mod stream;
