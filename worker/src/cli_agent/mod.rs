//! What the CLI agents (Claude Code, Codex) run with: the gate they reach as an MCP tool
//! (`gate`, `mcp`), the model proxy that holds the real key and counts usage (`proxy`), and the
//! mappers of their output streams onto omoi's `agent.*` events (`stream`).

pub mod gate;
pub mod mcp;
pub mod proxy;
pub mod stream;
