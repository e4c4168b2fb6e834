//! The DESIGN evaluator: overview, components, error handling, testing strategy and security are
//! substantive, and every requirement is served by a component.
//!
//! Blocking: no components, and a requirement that no component serves (the design would leave it
//! out) — unless it is documentation, process or a constraint and the design's text names it
//! where it says how it is met. A component naming a requirement that does not exist costs score. Without the
//! requirements in the context, traceability cannot be checked: a warning says so.

use std::collections::BTreeSet;

use omoi_protocol::artifact::{DesignOutput, RequirementKind, RequirementsOutput};
use omoi_protocol::eval::Evaluation;
use omoi_protocol::phase::Phase;

use super::score::{Scorecard, list, share, text_score, word_count};

/// Words for full marks: the overview, and each of error handling, testing strategy and security.
const OVERVIEW_WORDS: usize = 20;
const SECTION_WORDS: usize = 10;
/// Words a component's responsibility needs to count as stated.
const RESPONSIBILITY_WORDS: usize = 3;

pub fn evaluate(
    output: &DesignOutput,
    requirements: Option<&RequirementsOutput>,
    threshold: f64,
) -> Evaluation {
    let mut card = Scorecard::new(Phase::Design);

    let overview = text_score(&output.overview, OVERVIEW_WORDS);
    if overview == 0.0 {
        card.issue(
            Some("overview"),
            "the overview is empty: say how the design meets the requirements",
        );
    }
    card.criterion(
        "overview",
        0.15,
        overview,
        format!(
            "{} words; {OVERVIEW_WORDS} for full marks",
            word_count(&output.overview)
        ),
    );

    components(&mut card, output);
    traceability(&mut card, output, requirements);

    for (name, text, what) in [
        (
            "error_handling",
            &output.error_handling,
            "how failures are detected, reported and recovered",
        ),
        (
            "testing_strategy",
            &output.testing_strategy,
            "what is tested at which level and how",
        ),
        (
            "security",
            &output.security,
            "the threats that apply and how the design meets them",
        ),
    ] {
        let score = text_score(text, SECTION_WORDS);
        if score == 0.0 {
            card.issue(
                Some(name),
                format!("{name} is empty or a placeholder: describe {what}"),
            );
        }
        card.criterion(
            name,
            0.1,
            score,
            format!("{} words; {SECTION_WORDS} for full marks", word_count(text)),
        );
    }
    card.finish(threshold)
}

fn components(card: &mut Scorecard, output: &DesignOutput) {
    let total = output.components.len();
    if total == 0 {
        card.blocking(
            Some("components"),
            "no components: name the parts that implement the design",
        );
    }
    let mut complete = 0;
    for (n, component) in output.components.iter().enumerate() {
        let name = component.name.trim();
        let subject = if name.is_empty() {
            format!("component {}", n + 1)
        } else {
            name.to_string()
        };
        let mut ok = true;
        if name.is_empty() {
            card.issue(Some(&subject), "no name");
            ok = false;
        }
        if word_count(&component.responsibility) < RESPONSIBILITY_WORDS {
            card.issue(
                Some(&subject),
                "no responsibility: say what the component is for",
            );
            ok = false;
        }
        if component.requirements.is_empty() {
            card.warn(format!("{subject}: serves no requirement"));
        }
        if ok {
            complete += 1;
        }
    }
    card.criterion(
        "components",
        0.2,
        share(complete, total, 0.0),
        format!("{complete} of {total} components have a name and a responsibility"),
    );
}

/// The requirement ids the design's prose names: where it says how a requirement that needs no
/// component is met.
fn stated_ids(output: &DesignOutput) -> BTreeSet<&str> {
    let mut texts: Vec<&str> = vec![
        &output.overview,
        &output.error_handling,
        &output.testing_strategy,
        &output.security,
    ];
    texts.extend(output.data_models.iter().map(|m| m.description.as_str()));
    texts.extend(output.apis.iter().map(|a| a.description.as_str()));
    texts
        .into_iter()
        .flat_map(|t| {
            t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("REQ-"))
        })
        .collect()
}

fn kind_name(kind: RequirementKind) -> &'static str {
    match kind {
        RequirementKind::Functional => "functional",
        RequirementKind::NonFunctional => "non-functional",
        RequirementKind::Constraint => "constraint",
        RequirementKind::Documentation => "documentation",
        RequirementKind::Process => "process",
    }
}

fn traceability(
    card: &mut Scorecard,
    output: &DesignOutput,
    requirements: Option<&RequirementsOutput>,
) {
    let Some(requirements) = requirements else {
        card.warn("no requirements in the context: traceability was not checked");
        card.criterion(
            "traceability",
            0.35,
            1.0,
            "not checked: no requirements in the context",
        );
        return;
    };
    let known: BTreeSet<&str> = requirements
        .requirements
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    let served: BTreeSet<&str> = output
        .components
        .iter()
        .flat_map(|c| c.requirements.iter().map(String::as_str))
        .collect();
    let stated = stated_ids(output);
    let mut unserved = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &requirements.requirements {
        if !seen.insert(r.id.as_str()) {
            continue;
        }
        if served.contains(r.id.as_str()) {
            continue;
        }
        if r.kind.needs_no_component() {
            if stated.contains(r.id.as_str()) {
                continue;
            }
            unserved.push(r.id.as_str());
            card.blocking(
                Some(&r.id),
                format!(
                    "a {} requirement that the design neither serves with a component nor says \
                     how it meets: name {} in the overview, error handling, testing strategy or \
                     security text where the design meets it, or add it to a component",
                    kind_name(r.kind),
                    r.id
                ),
            );
            continue;
        }
        unserved.push(r.id.as_str());
        card.blocking(
            Some(&r.id),
            "served by no component: add it to the component that meets it (or, for \
             documentation, process or a constraint, give the requirement that type and say \
             in the design how it is met)",
        );
    }
    for component in &output.components {
        let unknown: Vec<&str> = component
            .requirements
            .iter()
            .map(String::as_str)
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            card.issue(
                Some(component.name.trim()),
                format!(
                    "serves unknown requirements {}: use the ids of the requirements",
                    list(&unknown)
                ),
            );
        }
    }
    let total = seen.len();
    let served_count = total - unserved.len();
    let detail = if unserved.is_empty() {
        format!("{served_count} of {total} requirements served by a component")
    } else {
        format!(
            "{served_count} of {total} requirements served by a component; unserved: {}",
            list(&unserved)
        )
    };
    card.criterion(
        "traceability",
        0.35,
        share(served_count, total, 1.0),
        detail,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::requirements::tests::requirement;
    use omoi_protocol::artifact::Component;
    use omoi_protocol::eval::{Criterion, Issue};
    use pretty_assertions::assert_eq;

    fn component(name: &str, serves: &[&str]) -> Component {
        Component {
            name: name.into(),
            responsibility: format!("renders the {name} part of the site"),
            interfaces: vec![],
            requirements: serves.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn good() -> DesignOutput {
        DesignOutput {
            overview: "A build command reads every note, renders it with the Markdown renderer \
                       and writes one page per note into the site directory, in parallel."
                .into(),
            components: vec![
                component("renderer", &["REQ-BUILD-001"]),
                component("writer", &["REQ-BUILD-001", "REQ-BUILD-002"]),
            ],
            data_models: vec![],
            apis: vec![],
            error_handling: "A note that fails to parse is reported with its path and line and \
                             the build exits 1."
                .into(),
            testing_strategy: "Unit tests per component; an integration test builds a sample \
                               notes folder and compares the output tree."
                .into(),
            security: "Notes are untrusted input: raw HTML is escaped and paths are kept inside \
                       the site directory."
                .into(),
        }
    }

    fn requirements() -> RequirementsOutput {
        RequirementsOutput {
            requirements: vec![requirement("REQ-BUILD-001"), requirement("REQ-BUILD-002")],
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
    fn a_complete_traceable_design_passes_with_full_marks() {
        assert_eq!(
            evaluate(&good(), Some(&requirements()), 0.7),
            Evaluation {
                phase: Phase::Design,
                score: 1.0,
                passed: true,
                criteria: vec![
                    criterion("overview", 0.15, 1.0, "24 words; 20 for full marks"),
                    criterion(
                        "components",
                        0.2,
                        1.0,
                        "2 of 2 components have a name and a responsibility"
                    ),
                    criterion(
                        "traceability",
                        0.35,
                        1.0,
                        "2 of 2 requirements served by a component"
                    ),
                    criterion("error_handling", 0.1, 1.0, "18 words; 10 for full marks"),
                    criterion("testing_strategy", 0.1, 1.0, "17 words; 10 for full marks"),
                    criterion("security", 0.1, 1.0, "16 words; 10 for full marks"),
                ],
                issues: vec![],
                warnings: vec![],
                ears: vec![],
            }
        );
    }

    #[test]
    fn an_unserved_requirement_blocks_and_unknown_ids_cost_score() {
        let mut design = good();
        design.components = vec![
            component("renderer", &["REQ-BUILD-001", "REQ-BUILD-009"]),
            Component {
                responsibility: "".into(),
                ..component("writer", &[])
            },
        ];
        design.security = "N/A".into();
        let evaluation = evaluate(&design, Some(&requirements()), 0.7);
        assert_eq!(
            evaluation.issues,
            vec![
                Issue {
                    blocking: false,
                    subject: Some("writer".into()),
                    message: "no responsibility: say what the component is for".into(),
                },
                Issue {
                    blocking: true,
                    subject: Some("REQ-BUILD-002".into()),
                    message: "served by no component: add it to the component that meets it (or, \
                              for documentation, process or a constraint, give the requirement \
                              that type and say in the design how it is met)"
                        .into(),
                },
                Issue {
                    blocking: false,
                    subject: Some("renderer".into()),
                    message: "serves unknown requirements REQ-BUILD-009: use the ids of the \
                              requirements"
                        .into(),
                },
                Issue {
                    blocking: false,
                    subject: Some("security".into()),
                    message: "security is empty or a placeholder: describe the threats that \
                              apply and how the design meets them"
                        .into(),
                },
            ]
        );
        assert_eq!(
            evaluation.warnings,
            vec!["writer: serves no requirement".to_string()]
        );
        assert_eq!(
            evaluation.criteria[2],
            criterion(
                "traceability",
                0.35,
                0.5,
                "1 of 2 requirements served by a component; unserved: REQ-BUILD-002"
            )
        );
        assert!(!evaluation.passed);
    }

    #[test]
    fn without_requirements_traceability_is_a_warning() {
        let evaluation = evaluate(&good(), None, 0.7);
        assert_eq!(
            evaluation.warnings,
            vec!["no requirements in the context: traceability was not checked".to_string()]
        );
        assert!(evaluation.passed);
    }

    #[test]
    fn a_requirement_that_is_not_code_is_met_by_the_design_text() {
        let mut reqs = requirements();
        for (r, kind) in reqs.requirements.iter_mut().zip([
            omoi_protocol::artifact::RequirementKind::Documentation,
            omoi_protocol::artifact::RequirementKind::Process,
        ]) {
            r.kind = kind;
        }
        let mut design = good();
        design.components = vec![component("renderer", &[])];
        design.testing_strategy = "Unit tests per component; REQ-BUILD-002 is met by a manual \
                                   review of the sample site before each release."
            .into();
        let evaluation = evaluate(&design, Some(&reqs), 0.7);
        let blocking: Vec<&Issue> = evaluation.issues.iter().filter(|i| i.blocking).collect();
        assert_eq!(
            blocking,
            vec![&Issue {
                blocking: true,
                subject: Some("REQ-BUILD-001".into()),
                message: "a documentation requirement that the design neither serves with a \
                          component nor says how it meets: name REQ-BUILD-001 in the overview, \
                          error handling, testing strategy or security text where the design \
                          meets it, or add it to a component"
                    .into(),
            }]
        );
        design
            .overview
            .push_str(" The user guide (REQ-BUILD-001) gains a page on builds.");
        assert!(evaluate(&design, Some(&reqs), 0.7).passed);
    }

    #[test]
    fn no_components_blocks() {
        let mut design = good();
        design.components = vec![];
        let evaluation = evaluate(&design, Some(&requirements()), 0.0);
        let blocking: Vec<Option<String>> = evaluation
            .issues
            .iter()
            .filter(|i| i.blocking)
            .map(|i| i.subject.clone())
            .collect();
        assert_eq!(
            blocking,
            vec![
                Some("components".to_string()),
                Some("REQ-BUILD-001".to_string()),
                Some("REQ-BUILD-002".to_string())
            ]
        );
        assert!(!evaluation.passed);
    }
}
