//! The tools an agent may call, confined to the workspace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;

/// Whether the agent may change the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// read_file, list_files, search, run.
    ReadOnly,
    /// Also write_file and edit_file.
    ReadWrite,
}

/// Limits of the `run` tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub timeout: Duration,
    /// Bytes of combined output kept (the rest is cut, and the cut is said).
    pub output_cap: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            timeout: Duration::from_secs(120),
            output_cap: 32 * 1024,
        }
    }
}

/// The tool set of a session.
#[derive(Debug, Clone)]
pub struct ToolBox {
    root: PathBuf,
    access: Access,
    run: RunLimits,
}

impl ToolBox {
    /// Tools rooted at `workspace` (canonicalized; it must exist).
    pub fn new(workspace: &Path, access: Access, run: RunLimits) -> Result<Self> {
        let root = workspace
            .canonicalize()
            .map_err(|e| crate::error::Error::io(format!("workspace {}", workspace.display()), e))?;
        Ok(ToolBox { root, access, run })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn access(&self) -> Access {
        self.access
    }

    pub fn run_limits(&self) -> RunLimits {
        self.run
    }
}
