//! Confinement of tool paths to the workspace: every path the model names is relative to the
//! workspace root, and what it resolves to (symlinks included) must stay inside the root.

use std::path::{Component, Path, PathBuf};

/// A path inside the workspace, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Confined {
    /// Where the file is on disk: the canonical path of its nearest existing ancestor (itself
    /// when it exists) joined with the components that do not exist yet.
    pub(crate) real: PathBuf,
    /// The same place relative to the workspace root, `/`-separated, for messages and events.
    pub(crate) display: String,
}

/// Resolves `raw` against `root` (which is canonical) and refuses anything that leaves it:
/// absolute paths, `..` that climbs above the root, and symlinks (at any component) whose
/// target lies outside. A path whose last components do not exist yet is checked through its
/// nearest existing ancestor, so creating it cannot escape either.
pub(crate) fn confine(root: &Path, raw: &str) -> Result<Confined, String> {
    if raw.contains('\0') {
        return Err(format!("path {raw:?} contains a NUL byte"));
    }
    let raw_path = Path::new(raw);
    if raw_path.is_absolute() {
        return Err(format!(
            "path `{raw}` is absolute; paths are relative to the workspace root"
        ));
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in raw_path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!("path `{raw}` leads outside the workspace"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "path `{raw}` is absolute; paths are relative to the workspace root"
                ));
            }
        }
    }

    // Walk down from the root; the first component that does not exist ends the part that
    // can contain symlinks.
    let mut existing = root.to_path_buf();
    let mut missing: Vec<&std::ffi::OsStr> = Vec::new();
    for part in &parts {
        if !missing.is_empty() {
            missing.push(part);
            continue;
        }
        let next = existing.join(part);
        match next.symlink_metadata() {
            Ok(_) => existing = next,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => missing.push(part),
            Err(err) => return Err(format!("path `{raw}`: {err}")),
        }
    }
    let canonical = existing.canonicalize().map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            format!("path `{raw}` goes through a symlink whose target does not exist")
        } else {
            format!("path `{raw}`: {err}")
        }
    })?;
    let Ok(inside) = canonical.strip_prefix(root) else {
        return Err(format!(
            "path `{raw}` resolves outside the workspace (through a symlink)"
        ));
    };
    let mut real = canonical.clone();
    let mut display_parts: Vec<String> = inside
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for part in missing {
        real.push(part);
        display_parts.push(part.to_string_lossy().into_owned());
    }
    let display = if display_parts.is_empty() {
        ".".to_owned()
    } else {
        display_parts.join("/")
    };
    Ok(Confined { real, display })
}

/// Whether a confined path lies in a directory the agent must not write to: `.git` (the
/// repository's own state) and `.omoi` (the worker's checkpoint and event spool).
/// Paths the agent may not write: the repository's `.git` and the worker's `.omoi` state,
/// except `.omoi/specs/`, where the spec-skill agent writes its documents.
pub(crate) fn is_protected(display: &str) -> bool {
    let mut parts = display.split('/');
    match parts.next() {
        Some(".git") => true,
        Some(".omoi") => parts.next() != Some("specs") || parts.next().is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::os::unix::fs::symlink;

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "fn main() {}\n").unwrap();
        let root = root.canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn plain_relative_paths_resolve_inside() {
        let (_dir, root) = workspace();
        assert_eq!(
            confine(&root, "src/lib.rs").unwrap(),
            Confined {
                real: root.join("src/lib.rs"),
                display: "src/lib.rs".into()
            }
        );
        assert_eq!(
            confine(&root, "./src/../src/lib.rs").unwrap().display,
            "src/lib.rs"
        );
        assert_eq!(
            confine(&root, ".").unwrap(),
            Confined {
                real: root.clone(),
                display: ".".into()
            }
        );
        assert_eq!(
            confine(&root, "new/dir/file.txt").unwrap(),
            Confined {
                real: root.join("new/dir/file.txt"),
                display: "new/dir/file.txt".into()
            }
        );
    }

    #[test]
    fn parent_dir_that_escapes_is_refused() {
        let (_dir, root) = workspace();
        assert_eq!(
            confine(&root, "../outside.txt"),
            Err("path `../outside.txt` leads outside the workspace".into())
        );
        assert_eq!(
            confine(&root, "src/../../ws/src/lib.rs"),
            Err("path `src/../../ws/src/lib.rs` leads outside the workspace".into())
        );
    }

    #[test]
    fn absolute_paths_are_refused() {
        let (_dir, root) = workspace();
        let inside = root.join("src/lib.rs");
        let inside = inside.to_str().unwrap();
        assert_eq!(
            confine(&root, "/etc/passwd"),
            Err("path `/etc/passwd` is absolute; paths are relative to the workspace root".into())
        );
        assert_eq!(
            confine(&root, inside),
            Err(format!(
                "path `{inside}` is absolute; paths are relative to the workspace root"
            ))
        );
    }

    #[test]
    fn symlink_to_a_file_outside_is_refused() {
        let (_dir, root) = workspace();
        symlink("/etc/passwd", root.join("host")).unwrap();
        assert_eq!(
            confine(&root, "host"),
            Err("path `host` resolves outside the workspace (through a symlink)".into())
        );
    }

    #[test]
    fn symlink_to_a_directory_outside_is_refused_for_existing_and_new_files() {
        let (dir, root) = workspace();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "x").unwrap();
        symlink(&outside, root.join("linked")).unwrap();
        assert_eq!(
            confine(&root, "linked/secret.txt"),
            Err(
                "path `linked/secret.txt` resolves outside the workspace (through a symlink)"
                    .into()
            )
        );
        assert_eq!(
            confine(&root, "linked/new/file.txt"),
            Err(
                "path `linked/new/file.txt` resolves outside the workspace (through a symlink)"
                    .into()
            )
        );
    }

    #[test]
    fn symlinked_parent_dir_inside_the_workspace_is_allowed() {
        let (_dir, root) = workspace();
        symlink(root.join("src"), root.join("alias")).unwrap();
        assert_eq!(
            confine(&root, "alias/lib.rs").unwrap(),
            Confined {
                real: root.join("src/lib.rs"),
                display: "src/lib.rs".into()
            }
        );
    }

    #[test]
    fn dangling_symlink_is_refused() {
        let (dir, root) = workspace();
        symlink(dir.path().join("nowhere"), root.join("dangling")).unwrap();
        assert_eq!(
            confine(&root, "dangling"),
            Err("path `dangling` goes through a symlink whose target does not exist".into())
        );
    }

    #[test]
    fn protected_directories() {
        assert!(is_protected(".git/config"));
        assert!(is_protected(".omoi"));
        assert!(is_protected(".omoi/checkpoint.json"));
        assert!(is_protected(".omoi/specs"));
        assert!(!is_protected(".omoi/specs/requirements.json"));
        assert!(!is_protected(".github/workflows/ci.yml"));
        assert!(!is_protected("src/.git_keep"));
    }
}
