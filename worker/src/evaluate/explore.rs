//! The EXPLORE evaluator: the fields are present and substantive, and every key file exists in the
//! workspace.
//!
//! A key file that does not exist, or a path that is absolute or leaves the workspace, is a
//! blocking issue: design and tasks build on the key files, so an invented path misleads every
//! later phase, and the agent can fix it cheaply by listing the workspace.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use omoi_protocol::artifact::{ExploreOutput, KeyFile};
use omoi_protocol::eval::Evaluation;
use omoi_protocol::phase::Phase;

use super::score::{Scorecard, is_placeholder, non_blank, share, text_score, word_count};

/// Words a summary needs for full marks.
const SUMMARY_WORDS: usize = 15;
/// Words a test layout needs for full marks.
const TEST_LAYOUT_WORDS: usize = 5;

pub fn evaluate(output: &ExploreOutput, workspace: &Path, threshold: f64) -> Evaluation {
    let mut card = Scorecard::new(Phase::Explore);

    let summary = text_score(&output.summary, SUMMARY_WORDS);
    if summary == 0.0 {
        card.issue(
            Some("summary"),
            "the summary is empty: say what the codebase is and does",
        );
    }
    card.criterion(
        "summary",
        0.15,
        summary,
        format!(
            "{} words; {SUMMARY_WORDS} for full marks",
            word_count(&output.summary)
        ),
    );

    let project_type = if is_placeholder(&output.project_type) {
        0.0
    } else {
        1.0
    };
    if project_type == 0.0 {
        card.issue(
            Some("project_type"),
            "the project type is empty (e.g. cli, web service, library)",
        );
    }
    card.criterion(
        "project_type",
        0.05,
        project_type,
        quoted(&output.project_type),
    );

    let stack = non_blank(&output.tech_stack);
    if stack == 0 {
        card.issue(
            Some("tech_stack"),
            "the tech stack is empty: name the languages and frameworks",
        );
    }
    card.criterion(
        "tech_stack",
        0.1,
        share(stack.min(1), 1, 0.0),
        format!("{stack} entries"),
    );

    key_files(&mut card, &output.key_files, workspace);

    let conventions = non_blank(&output.conventions);
    if conventions == 0 {
        card.issue(
            Some("conventions"),
            "no conventions: note naming, layout, error handling, tests",
        );
    }
    card.criterion(
        "conventions",
        0.1,
        share(conventions.min(2), 2, 0.0),
        format!("{conventions} conventions; 2 for full marks"),
    );

    let entry_points = non_blank(&output.entry_points);
    if entry_points == 0 {
        card.issue(
            Some("entry_points"),
            "no entry points: name where execution starts",
        );
    }
    card.criterion(
        "entry_points",
        0.1,
        share(entry_points.min(1), 1, 0.0),
        format!("{entry_points} entry points"),
    );

    let test_layout = text_score(&output.test_layout, TEST_LAYOUT_WORDS);
    if test_layout == 0.0 {
        card.issue(
            Some("test_layout"),
            "the test layout is empty: say where tests live and how they run",
        );
    }
    card.criterion(
        "test_layout",
        0.15,
        test_layout,
        format!(
            "{} words; {TEST_LAYOUT_WORDS} for full marks",
            word_count(&output.test_layout)
        ),
    );

    card.finish(threshold)
}

fn key_files(card: &mut Scorecard, files: &[KeyFile], workspace: &Path) {
    if files.is_empty() {
        card.blocking(
            Some("key_files"),
            "no key files: name at least one file of the workspace that matters for the feature",
        );
        card.criterion("key_files", 0.35, 0.0, "no key files");
        return;
    }
    let mut seen = BTreeSet::new();
    let mut found = 0;
    for file in files {
        let path = file.path.trim();
        if !seen.insert(path) {
            card.warn(format!("{path}: listed more than once"));
            continue;
        }
        match check_path(path, workspace) {
            Ok(()) => found += 1,
            Err(problem) => card.blocking(Some(path), problem),
        }
        if file.purpose.trim().is_empty() {
            card.warn(format!(
                "{path}: no purpose given; say why the file matters"
            ));
        }
    }
    card.criterion(
        "key_files",
        0.35,
        share(found, seen.len(), 0.0),
        format!("{found} of {} key files exist in the workspace", seen.len()),
    );
}

/// Why `path` is not a file of the workspace, if it is not.
fn check_path(path: &str, workspace: &Path) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path: give the file's path relative to the workspace root".into());
    }
    let relative = Path::new(path);
    if relative.is_absolute() || relative.has_root() {
        return Err("absolute path: give it relative to the workspace root".into());
    }
    let mut depth: i64 = 0;
    for component in relative.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
        if depth < 0 {
            return Err("leaves the workspace through `..`: key files live inside it".into());
        }
    }
    if workspace.join(relative).exists() {
        Ok(())
    } else {
        Err("does not exist in the workspace: list the files and name one that does".into())
    }
}

fn quoted(text: &str) -> String {
    format!("{:?}", text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use omoi_protocol::eval::{Criterion, Issue};
    use pretty_assertions::assert_eq;

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\n").unwrap();
        dir
    }

    fn key(path: &str) -> KeyFile {
        KeyFile {
            path: path.into(),
            purpose: format!("why {path} matters"),
        }
    }

    pub(crate) fn good() -> ExploreOutput {
        ExploreOutput {
            summary: "A command line tool that converts Markdown notes into a static site, with \
                      a watch mode and a small plugin system for custom blocks."
                .into(),
            project_type: "cli".into(),
            tech_stack: vec!["Rust".into(), "clap".into()],
            key_files: vec![key("src/main.rs"), key("./Cargo.toml")],
            conventions: vec!["snake_case modules".into(), "errors with thiserror".into()],
            entry_points: vec!["src/main.rs".into()],
            test_layout: "unit tests beside the code, run with cargo test".into(),
            questions: vec![],
        }
    }

    fn criterion(name: &str, weight: f64, score: f64, detail: &str) -> Criterion {
        Criterion {
            name: name.into(),
            weight,
            score,
            detail: detail.into(),
        }
    }

    #[test]
    fn a_substantive_output_whose_files_exist_passes_with_full_marks() {
        let dir = workspace();
        assert_eq!(
            evaluate(&good(), dir.path(), 0.7),
            Evaluation {
                phase: Phase::Explore,
                score: 1.0,
                passed: true,
                criteria: vec![
                    criterion("summary", 0.15, 1.0, "24 words; 15 for full marks"),
                    criterion("project_type", 0.05, 1.0, "\"cli\""),
                    criterion("tech_stack", 0.1, 1.0, "2 entries"),
                    criterion(
                        "key_files",
                        0.35,
                        1.0,
                        "2 of 2 key files exist in the workspace"
                    ),
                    criterion("conventions", 0.1, 1.0, "2 conventions; 2 for full marks"),
                    criterion("entry_points", 0.1, 1.0, "1 entry points"),
                    criterion("test_layout", 0.15, 1.0, "9 words; 5 for full marks"),
                ],
                issues: vec![],
                warnings: vec![],
                ears: vec![],
            }
        );
    }

    #[test]
    fn missing_absolute_and_escaping_key_files_block() {
        let dir = workspace();
        let mut output = good();
        output.key_files = vec![
            key("src/main.rs"),
            key("src/lib.rs"),
            key("/etc/passwd"),
            key("src/../../secret"),
            KeyFile {
                path: "src/main.rs".into(),
                purpose: String::new(),
            },
        ];
        let evaluation = evaluate(&output, dir.path(), 0.7);
        let blocking = |subject: &str, message: &str| Issue {
            blocking: true,
            subject: Some(subject.into()),
            message: message.into(),
        };
        assert_eq!(
            evaluation.issues,
            vec![
                blocking(
                    "src/lib.rs",
                    "does not exist in the workspace: list the files and name one that does"
                ),
                blocking(
                    "/etc/passwd",
                    "absolute path: give it relative to the workspace root"
                ),
                blocking(
                    "src/../../secret",
                    "leaves the workspace through `..`: key files live inside it"
                ),
            ]
        );
        assert_eq!(
            evaluation.warnings,
            vec!["src/main.rs: listed more than once".to_string()]
        );
        assert_eq!(
            evaluation.criteria[3],
            criterion(
                "key_files",
                0.35,
                0.25,
                "1 of 4 key files exist in the workspace"
            )
        );
        assert!(!evaluation.passed);
    }

    #[test]
    fn a_parent_step_that_stays_inside_is_allowed() {
        let dir = workspace();
        assert_eq!(check_path("src/../Cargo.toml", dir.path()), Ok(()));
    }

    #[test]
    fn no_key_files_blocks_and_empty_fields_cost_score() {
        let dir = workspace();
        let output = ExploreOutput {
            summary: "TBD".into(),
            project_type: " ".into(),
            tech_stack: vec![],
            key_files: vec![],
            conventions: vec!["".into()],
            entry_points: vec![],
            test_layout: String::new(),
            questions: vec![],
        };
        let evaluation = evaluate(&output, dir.path(), 0.7);
        assert_eq!(evaluation.score, 0.0);
        assert!(!evaluation.passed);
        let subjects: Vec<(bool, Option<String>)> = evaluation
            .issues
            .iter()
            .map(|i| (i.blocking, i.subject.clone()))
            .collect();
        assert_eq!(
            subjects,
            vec![
                (false, Some("summary".to_string())),
                (false, Some("project_type".to_string())),
                (false, Some("tech_stack".to_string())),
                (true, Some("key_files".to_string())),
                (false, Some("conventions".to_string())),
                (false, Some("entry_points".to_string())),
                (false, Some("test_layout".to_string())),
            ]
        );
    }

    #[test]
    fn a_short_summary_scores_in_proportion() {
        let dir = workspace();
        let mut output = good();
        output.summary = "A static site generator.".into();
        let evaluation = evaluate(&output, dir.path(), 0.7);
        assert_eq!(
            evaluation.criteria[0],
            criterion("summary", 0.15, 0.2667, "4 words; 15 for full marks")
        );
        assert_eq!(evaluation.score, 0.89);
        assert!(evaluation.passed);
    }
}
