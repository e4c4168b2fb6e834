//! The context of one bridged task (`TASK_CONTEXT_B64`, `omoi_protocol::task::TaskContext`): the
//! task with its acceptance criteria, the requirements it serves in full, the design components
//! that serve those requirements, and where its code lives and lands.

use omoi_protocol::artifact::{FinalSpec, SpecTask};
use omoi_protocol::task::{SpecRecord, TaskContext};

use crate::launch::record_fits;
use crate::model::{Project, Spec, SpecSlice, spec_branch, spec_folder};

/// The context a task sandbox works from; `spec_record` is the final spec for a task that depends
/// on no other (see [`spec_record`]).
pub fn task_context(
    spec: &Spec,
    project: &Project,
    slice: SpecSlice,
    task: &SpecTask,
    spec_record: Option<SpecRecord>,
) -> TaskContext {
    TaskContext {
        task: task.clone(),
        spec_id: spec.id.clone(),
        spec_title: spec.title.clone(),
        spec_description: spec.description.clone(),
        requirements: slice.requirements,
        components: slice.components,
        repo_url: project.repo_url.clone(),
        base_branch: project.base_branch.clone(),
        branch: spec.branch.clone().unwrap_or_else(|| spec_branch(&spec.id)),
        validation_command: project.validation_command.clone(),
        spec_record,
    }
}

/// The final spec as it lands in the repository: its requirements, design and tasks, for the
/// folder [`spec_folder`] names; `None` when it is too large to hand to a task in its
/// environment ([`record_fits`]), so the spec is not recorded.
pub fn spec_record(spec: &Spec, final_spec: &FinalSpec) -> Option<SpecRecord> {
    let record = SpecRecord {
        dir: spec_folder(&spec.title, &spec.id),
        requirements: final_spec.requirements.clone(),
        design: final_spec.design.clone(),
        tasks: final_spec.tasks.clone(),
    };
    record_fits(&record).then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use omoi_protocol::artifact::{
        Component, DesignOutput, ExploreOutput, FinalSpec, Priority, Requirement, RequirementKind,
        RequirementsOutput, SyncOutput, TaskKind, TasksOutput,
    };
    use pretty_assertions::assert_eq;
    use std::collections::BTreeMap;

    use crate::model::SpecStatus;

    fn requirement(id: &str) -> Requirement {
        Requirement {
            id: id.into(),
            title: format!("title of {id}"),
            text: "The system shall work.".into(),
            kind: RequirementKind::Functional,
            priority: Priority::High,
            acceptance_criteria: vec!["a".into(), "b".into()],
        }
    }

    fn component(name: &str, requirements: &[&str]) -> Component {
        Component {
            name: name.into(),
            responsibility: format!("{name} things"),
            interfaces: vec![],
            requirements: requirements.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn task(id: &str, requirements: &[&str]) -> SpecTask {
        SpecTask {
            id: id.into(),
            title: format!("do {id}"),
            description: "d".into(),
            kind: TaskKind::Implementation,
            priority: Priority::High,
            estimate_hours: 1.0,
            files: vec![],
            acceptance_criteria: vec!["it works".into()],
            depends_on: vec![],
            requirements: requirements.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_task_gets_its_requirements_in_full_and_the_components_that_serve_them() {
        let final_spec = FinalSpec {
            title: "t".into(),
            description: "d".into(),
            explore: ExploreOutput {
                summary: "s".into(),
                project_type: "cli".into(),
                tech_stack: vec![],
                key_files: vec![],
                conventions: vec![],
                entry_points: vec![],
                test_layout: "t".into(),
                questions: vec![],
            },
            requirements: RequirementsOutput {
                requirements: vec![
                    requirement("REQ-A-001"),
                    requirement("REQ-A-002"),
                    requirement("REQ-A-003"),
                ],
            },
            design: DesignOutput {
                overview: "o".into(),
                components: vec![
                    component("parser", &["REQ-A-001"]),
                    component("printer", &["REQ-A-002"]),
                    component("docs", &["REQ-A-003", "REQ-A-001"]),
                ],
                data_models: vec![],
                apis: vec![],
                error_handling: "e".into(),
                testing_strategy: "t".into(),
                security: "s".into(),
            },
            tasks: TasksOutput {
                tasks: vec![task("TSK-001", &["REQ-A-001"])],
            },
            sync: SyncOutput {
                coverage: vec![],
                coverage_percent: 100.0,
                uncovered: vec![],
                topological_order: vec![],
                parallel_groups: vec![],
                critical_path: vec![],
                critical_path_hours: 0.0,
                total_hours: 0.0,
                ready_for_execution: true,
                issues: vec![],
            },
        };
        let spec = Spec {
            id: "spec-1".into(),
            project_id: "p".into(),
            title: "Add a flag".into(),
            description: "With details".into(),
            status: SpecStatus::Implementing,
            current_phase: None,
            error: None,
            stop_after: None,
            recoveries: 0,
            branch: Some("omoi/spec-1".into()),
            pull_request: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let project = Project {
            id: "p".into(),
            name: "n".into(),
            repo_url: "file:///srv/greet.git".into(),
            base_branch: "trunk".into(),
            validation_command: Some("make test".into()),
            provider: "local".into(),
            image: None,
            image_pull_secrets: Vec::new(),
            worker_env: BTreeMap::new(),
            secret_env: Vec::new(),
            worker_secrets: BTreeMap::new(),
            github_api_url: None,
            has_git_token: false,
            git_token: None,
            created_at: Utc::now(),
        };
        let the_task = task("TSK-001", &["REQ-A-001"]);
        assert_eq!(
            task_context(
                &spec,
                &project,
                SpecSlice::of(&final_spec, &the_task),
                &the_task,
                spec_record(&spec, &final_spec),
            ),
            TaskContext {
                task: the_task.clone(),
                spec_id: "spec-1".into(),
                spec_title: "Add a flag".into(),
                spec_description: "With details".into(),
                requirements: vec![requirement("REQ-A-001")],
                components: vec![
                    component("parser", &["REQ-A-001"]),
                    component("docs", &["REQ-A-003", "REQ-A-001"]),
                ],
                repo_url: "file:///srv/greet.git".into(),
                base_branch: "trunk".into(),
                branch: "omoi/spec-1".into(),
                validation_command: Some("make test".into()),
                spec_record: Some(SpecRecord {
                    dir: ".kiro/specs/add-a-flag".into(),
                    requirements: final_spec.requirements.clone(),
                    design: final_spec.design.clone(),
                    tasks: final_spec.tasks.clone(),
                }),
            }
        );
    }
}
