//! The worker's files in `.omoi/` of the workspace: the checkpoint after each passing phase and
//! the final spec. Writes are atomic (temporary file, then rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use omoi_protocol::artifact::FinalSpec;
use omoi_protocol::context::Checkpoint;

use crate::config::state_dir;
use crate::error::{Error, Result};

/// `.omoi/checkpoint.json`.
pub fn checkpoint_path(workspace: &Path) -> PathBuf {
    state_dir(workspace).join("checkpoint.json")
}

/// `.omoi/spec.json`: the final spec of a completed run.
pub fn spec_path(workspace: &Path) -> PathBuf {
    state_dir(workspace).join("spec.json")
}

/// The checkpoint left in this workspace for `spec_id`, if any. A checkpoint of another spec,
/// or one that cannot be read, is ignored with a warning: starting over loses time, not data.
pub fn load(workspace: &Path, spec_id: &str) -> Option<Checkpoint> {
    let path = checkpoint_path(workspace);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot read the checkpoint; ignoring it");
            return None;
        }
    };
    match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) if checkpoint.spec_id == spec_id => Some(checkpoint),
        Ok(checkpoint) => {
            tracing::warn!(
                found = %checkpoint.spec_id,
                spec_id,
                "the checkpoint belongs to another spec; ignoring it"
            );
            None
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "the checkpoint is not valid JSON; ignoring it");
            None
        }
    }
}

/// Writes the checkpoint atomically.
pub fn save(workspace: &Path, checkpoint: &Checkpoint) -> Result<()> {
    write_json(&checkpoint_path(workspace), checkpoint)
}

/// Writes the final spec atomically.
pub fn save_spec(workspace: &Path, spec: &FinalSpec) -> Result<()> {
    write_json(&spec_path(workspace), spec)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent", path.display())))?;
    ensure_state_dir(dir)?;
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::json(format!("encode {}", path.display()), e))?;
    let tmp = path.with_extension("json.tmp");
    // Atomic against a killed worker (the rename), without an fsync: a sandbox whose machine
    // crashes is lost as a whole, and the coordinator keeps the durable copy of every
    // checkpoint (`spec.phase_completed`).
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        drop(file);
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Creates `.omoi/` and keeps git from ever committing it: the directory holds its own
/// `.gitignore` of `*`, so the worker's state never reaches a commit or a diff.
pub fn ensure_state_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n")
            .map_err(|e| Error::io(format!("write {}", ignore.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use omoi_protocol::context::PhaseContext;
    use omoi_protocol::phase::Phase;
    use pretty_assertions::assert_eq;

    use super::*;

    fn checkpoint(spec_id: &str) -> Checkpoint {
        Checkpoint {
            spec_id: spec_id.into(),
            completed: Phase::Explore,
            context: PhaseContext {
                title: "t".into(),
                ..PhaseContext::default()
            },
        }
    }

    #[test]
    fn save_then_load_round_trips_and_ignores_git() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &checkpoint("s1")).unwrap();
        assert_eq!(load(dir.path(), "s1"), Some(checkpoint("s1")));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".omoi/.gitignore")).unwrap(),
            "*\n"
        );
        assert!(!dir.path().join(".omoi/checkpoint.json.tmp").exists());
    }

    #[test]
    fn foreign_missing_or_corrupt_checkpoints_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "s1"), None);
        save(dir.path(), &checkpoint("other")).unwrap();
        assert_eq!(load(dir.path(), "s1"), None);
        std::fs::write(checkpoint_path(dir.path()), "{ half").unwrap();
        assert_eq!(load(dir.path(), "other"), None);
    }
}
