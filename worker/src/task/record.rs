//! The final spec recorded in the repository: a task that carries the spec (`spec_record` of its
//! context) writes it as a Kiro spec folder (`requirements.md`, `design.md`, `tasks.md`) before
//! its commit, unless the checkout holds exactly those files already (another task landed them).

use std::path::{Component, Path, PathBuf};

use omoi_protocol::task::TaskContext;

use crate::error::{Error, Result};
use crate::formats::{self, Format, Spec};

/// Writes the record of `context`'s spec into `workspace`; returns the folder (relative to the
/// workspace) when a file was written or changed, `None` when there is no record or the files
/// are there already.
pub fn write(workspace: &Path, context: &TaskContext) -> Result<Option<String>> {
    let Some(record) = &context.spec_record else {
        return Ok(None);
    };
    let dir = folder(workspace, &record.dir)?;
    let spec = Spec {
        title: context.spec_title.clone(),
        description: context.spec_description.clone(),
        requirements: Some(record.requirements.clone()),
        design: Some(record.design.clone()),
        tasks: Some(record.tasks.clone()),
        ..Spec::default()
    };
    // Every file is checked before any is written.
    let mut stale = Vec::new();
    for (name, text) in formats::render(&spec, Format::Kiro)? {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                return Err(refused(&record.dir, &format!("{name} is not a plain file")));
            }
            Ok(_) if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) => {}
            _ => stale.push((path, name, text)),
        }
    }
    if stale.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", record.dir), e))?;
    for (path, name, text) in stale {
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("write {}/{name}", record.dir), e))?;
    }
    Ok(Some(record.dir.clone()))
}

/// The record's folder inside `workspace`: a relative path of plain names, none of which is a
/// symbolic link or a file already.
fn folder(workspace: &Path, dir: &str) -> Result<PathBuf> {
    let relative = Path::new(dir);
    let plain = !dir.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain || dir.starts_with(".omoi") || dir.starts_with(".git/") || dir == ".git" {
        return Err(refused(
            dir,
            "is not a folder of the repository (a relative path of plain names, outside .git and .omoi)",
        ));
    }
    let mut path = workspace.to_path_buf();
    for part in relative.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refused(dir, "passes through a symbolic link"));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(refused(dir, "passes through a file"));
            }
            _ => {}
        }
    }
    Ok(path)
}

fn refused(dir: &str, why: &str) -> Error {
    Error::Workspace(format!(
        "the spec's folder {dir:?} {why}: the spec was not recorded"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omoi_protocol::artifact::{
        Component as DesignComponent, DesignOutput, Priority, Requirement, RequirementKind,
        RequirementsOutput, SpecTask, TaskKind, TasksOutput,
    };
    use omoi_protocol::task::SpecRecord;
    use pretty_assertions::assert_eq;

    fn context(dir: &str) -> TaskContext {
        let task = SpecTask {
            id: "TSK-001".into(),
            title: "Add the flag".into(),
            description: "Parse --shout.".into(),
            kind: TaskKind::Implementation,
            priority: Priority::High,
            estimate_hours: 2.0,
            files: vec!["src/main.rs".into()],
            acceptance_criteria: vec!["greet --shout prints capitals".into()],
            depends_on: vec![],
            requirements: vec!["REQ-CLI-001".into()],
        };
        TaskContext {
            task: task.clone(),
            spec_id: "s".into(),
            spec_title: "Shout".into(),
            spec_description: "Add --shout".into(),
            requirements: vec![],
            components: vec![],
            repo_url: "/r".into(),
            base_branch: "main".into(),
            branch: "omoi/s".into(),
            validation_command: None,
            spec_record: Some(SpecRecord {
                dir: dir.into(),
                requirements: RequirementsOutput {
                    requirements: vec![Requirement {
                        id: "REQ-CLI-001".into(),
                        title: "Shout option".into(),
                        text: "When the user passes --shout, the CLI shall print the greeting \
                               in capitals."
                            .into(),
                        kind: RequirementKind::Functional,
                        priority: Priority::High,
                        acceptance_criteria: vec!["capitals".into(), "exit 0".into()],
                    }],
                },
                design: DesignOutput {
                    overview: "A flag.".into(),
                    components: vec![DesignComponent {
                        name: "cli".into(),
                        responsibility: "parses flags".into(),
                        interfaces: vec![],
                        requirements: vec!["REQ-CLI-001".into()],
                    }],
                    data_models: vec![],
                    apis: vec![],
                    error_handling: "Errors exit 2.".into(),
                    testing_strategy: "Shell tests.".into(),
                    security: "None.".into(),
                },
                tasks: TasksOutput { tasks: vec![task] },
            }),
        }
    }

    #[test]
    fn the_record_is_written_once_and_reads_back_as_the_spec() {
        let workspace = tempfile::tempdir().unwrap();
        let ctx = context(".kiro/specs/shout");
        assert_eq!(
            write(workspace.path(), &ctx).unwrap(),
            Some(".kiro/specs/shout".to_string())
        );
        let dir = workspace.path().join(".kiro/specs/shout");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["design.md", "requirements.md", "tasks.md"]);
        let (format, spec) = formats::read(&dir, None).unwrap();
        assert_eq!(format, Format::Kiro);
        let record = ctx.spec_record.as_ref().unwrap();
        assert_eq!(spec.requirements.as_ref(), Some(&record.requirements));
        assert_eq!(spec.tasks.as_ref(), Some(&record.tasks));
        assert_eq!(
            spec.design.as_ref().map(|d| &d.components),
            Some(&record.design.components)
        );
        // Already there: nothing to write.
        assert_eq!(write(workspace.path(), &ctx).unwrap(), None);
        // A changed file is written back.
        std::fs::write(dir.join("tasks.md"), "edited").unwrap();
        assert_eq!(
            write(workspace.path(), &ctx).unwrap(),
            Some(".kiro/specs/shout".to_string())
        );
        assert_ne!(
            std::fs::read_to_string(dir.join("tasks.md")).unwrap(),
            "edited"
        );
        // No record, nothing written.
        let without = TaskContext {
            spec_record: None,
            ..ctx
        };
        assert_eq!(write(workspace.path(), &without).unwrap(), None);
    }

    #[test]
    fn a_folder_outside_the_repository_or_through_a_link_is_refused() {
        let workspace = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "/tmp/spec",
            "../spec",
            ".kiro/../../spec",
            "./.kiro/specs/x",
            ".git/specs",
            ".git",
            ".omoi/spec",
        ] {
            let error = write(workspace.path(), &context(bad))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("the spec was not recorded"),
                "{bad}: {error}"
            );
        }
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), workspace.path().join(".kiro")).unwrap();
        let error = write(workspace.path(), &context(".kiro/specs/x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("passes through a symbolic link"), "{error}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        std::fs::remove_file(workspace.path().join(".kiro")).unwrap();
        std::fs::write(workspace.path().join(".kiro"), "a file").unwrap();
        let error = write(workspace.path(), &context(".kiro/specs/x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("passes through a file"), "{error}");
        // A file of the folder that is a link is not written through.
        std::fs::remove_file(workspace.path().join(".kiro")).unwrap();
        std::fs::create_dir_all(workspace.path().join(".kiro/specs/x")).unwrap();
        let target = outside.path().join("secret");
        std::fs::write(&target, "kept").unwrap();
        std::os::unix::fs::symlink(&target, workspace.path().join(".kiro/specs/x/design.md"))
            .unwrap();
        let error = write(workspace.path(), &context(".kiro/specs/x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("design.md is not a plain file"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
    }
}
