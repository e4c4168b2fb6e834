//! The REQUIREMENTS evaluator: well-formed unique ids, EARS texts with one SHALL, at least two
//! acceptance criteria each, and no vague wording.
//!
//! Blocking: no requirements at all, and an id used twice (design and tasks could not say which
//! one they serve). Everything else costs score.

use std::collections::BTreeMap;

use omoi_protocol::artifact::RequirementsOutput;
use omoi_protocol::eval::{EarsReading, Evaluation};
use omoi_protocol::phase::Phase;

use super::ears;
use super::score::{Scorecard, list, non_blank, share};

/// Acceptance criteria a requirement needs.
const MIN_ACCEPTANCE_CRITERIA: usize = 2;

pub fn evaluate(output: &RequirementsOutput, threshold: f64) -> Evaluation {
    let mut card = Scorecard::new(Phase::Requirements);
    let requirements = &output.requirements;
    let total = requirements.len();
    if total == 0 {
        card.blocking(
            Some("requirements"),
            "no requirements: state what the feature must do as EARS requirements",
        );
    }

    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for r in requirements {
        *uses.entry(r.id.as_str()).or_default() += 1;
    }
    let mut reported = Vec::new();
    let mut ids_ok = 0;
    let mut ears_ok = 0;
    let mut criteria_sum = 0.0;
    let mut clear = 0;
    let mut titled = 0;
    for r in requirements {
        let id = r.id.as_str();
        let count = uses.get(id).copied().unwrap_or(0);
        let well_formed = is_requirement_id(id);
        if count > 1 && !reported.contains(&id) {
            reported.push(id);
            card.blocking(
                Some(id),
                format!("id used by {count} requirements: give each its own"),
            );
        }
        if !well_formed {
            card.issue(
                Some(id),
                "malformed id: use REQ-<AREA>-<NNN>, AREA 2–12 uppercase letters or digits, NNN \
                 three digits (e.g. REQ-AUTH-001)",
            );
        }
        if well_formed && count == 1 {
            ids_ok += 1;
        }

        if r.title.trim().is_empty() {
            card.issue(Some(id), "no title");
        } else {
            titled += 1;
        }

        match ears::read(&r.text) {
            Ok(reading) => {
                ears_ok += 1;
                card.ears(EarsReading {
                    requirement: r.id.clone(),
                    pattern: reading.pattern,
                    clauses: reading.clauses,
                    system: reading.system,
                    response: reading.response,
                });
            }
            Err(error) => card.issue(Some(id), format!("text is not EARS: {error}")),
        }

        let criteria = non_blank(&r.acceptance_criteria);
        if criteria < MIN_ACCEPTANCE_CRITERIA {
            card.issue(
                Some(id),
                format!(
                    "{criteria} acceptance criteria: give at least {MIN_ACCEPTANCE_CRITERIA} \
                     testable ones"
                ),
            );
        }
        criteria_sum += share(
            criteria.min(MIN_ACCEPTANCE_CRITERIA),
            MIN_ACCEPTANCE_CRITERIA,
            0.0,
        );

        let mut vague = ears::vague_terms(&r.text);
        for criterion in &r.acceptance_criteria {
            for term in ears::vague_terms(criterion) {
                if !vague.contains(&term) {
                    vague.push(term);
                }
            }
        }
        if vague.is_empty() {
            clear += 1;
        } else {
            card.warn(format!(
                "{id}: vague wording ({}): state a measurable condition instead",
                list(&vague)
            ));
        }
    }

    card.criterion(
        "ids",
        0.15,
        share(ids_ok, total, 0.0),
        format!("{ids_ok} of {total} ids well formed and unique"),
    );
    card.criterion(
        "ears",
        0.4,
        share(ears_ok, total, 0.0),
        format!("{ears_ok} of {total} texts follow an EARS pattern with one SHALL"),
    );
    card.criterion(
        "acceptance_criteria",
        0.25,
        if total == 0 {
            0.0
        } else {
            criteria_sum / total as f64
        },
        format!("at least {MIN_ACCEPTANCE_CRITERIA} acceptance criteria per requirement"),
    );
    card.criterion(
        "clarity",
        0.1,
        share(clear, total, 0.0),
        format!("{clear} of {total} requirements free of vague wording"),
    );
    card.criterion(
        "titles",
        0.1,
        share(titled, total, 0.0),
        format!("{titled} of {total} titled"),
    );
    card.finish(threshold)
}

/// `REQ-<AREA>-<NNN>`: AREA 2–12 uppercase ASCII letters or digits, NNN three digits.
pub fn is_requirement_id(id: &str) -> bool {
    let mut parts = id.split('-');
    let (Some("REQ"), Some(area), Some(number), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    (2..=12).contains(&area.len())
        && area
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && number.len() == 3
        && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use omoi_protocol::artifact::{Priority, Requirement, RequirementKind};
    use omoi_protocol::eval::{Criterion, EarsClause, EarsKeyword, EarsPattern, Issue};
    use pretty_assertions::assert_eq;

    /// A requirement that passes every check.
    pub(crate) fn requirement(id: &str) -> Requirement {
        Requirement {
            id: id.into(),
            title: format!("Requirement {id}"),
            text: "When the user runs `notes build`, the CLI shall write one HTML page per note."
                .into(),
            kind: RequirementKind::Functional,
            priority: Priority::High,
            acceptance_criteria: vec![
                "a note `a.md` produces `site/a.html`".into(),
                "the exit code is 0 on success".into(),
            ],
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

    fn issue(blocking: bool, subject: &str, message: &str) -> Issue {
        Issue {
            blocking,
            subject: Some(subject.into()),
            message: message.into(),
        }
    }

    #[test]
    fn ids() {
        for good in [
            "REQ-AUTH-001",
            "REQ-UI-999",
            "REQ-V2-010",
            "REQ-ABCDEFGHIJKL-123",
        ] {
            assert!(is_requirement_id(good), "{good}");
        }
        for bad in [
            "REQ-A-001",
            "REQ-auth-001",
            "REQ-AUTH-01",
            "REQ-AUTH-0001",
            "REQ-ABCDEFGHIJKLM-001",
            "REQ-AUTH-001-X",
            "REQ-AUTH",
            "TSK-001",
            "req-AUTH-001",
            "REQ-AU_TH-001",
        ] {
            assert!(!is_requirement_id(bad), "{bad}");
        }
    }

    #[test]
    fn good_requirements_pass_with_full_marks() {
        let output = RequirementsOutput {
            requirements: vec![requirement("REQ-BUILD-001"), requirement("REQ-BUILD-002")],
        };
        assert_eq!(
            evaluate(&output, 0.7),
            Evaluation {
                phase: Phase::Requirements,
                score: 1.0,
                passed: true,
                criteria: vec![
                    criterion("ids", 0.15, 1.0, "2 of 2 ids well formed and unique"),
                    criterion(
                        "ears",
                        0.4,
                        1.0,
                        "2 of 2 texts follow an EARS pattern with one SHALL"
                    ),
                    criterion(
                        "acceptance_criteria",
                        0.25,
                        1.0,
                        "at least 2 acceptance criteria per requirement"
                    ),
                    criterion(
                        "clarity",
                        0.1,
                        1.0,
                        "2 of 2 requirements free of vague wording"
                    ),
                    criterion("titles", 0.1, 1.0, "2 of 2 titled"),
                ],
                issues: vec![],
                warnings: vec![],
                ears: ["REQ-BUILD-001", "REQ-BUILD-002"]
                    .map(|id| EarsReading {
                        requirement: id.into(),
                        pattern: EarsPattern::EventDriven,
                        clauses: vec![EarsClause {
                            keyword: EarsKeyword::When,
                            text: "the user runs `notes build`".into(),
                        }],
                        system: "the CLI".into(),
                        response: "write one HTML page per note".into(),
                    })
                    .to_vec(),
            }
        );
    }

    #[test]
    fn bad_requirements_fail_with_each_problem_named() {
        let mut vague = requirement("REQ-BUILD-002");
        vague.text = "The CLI shall be fast and user-friendly.".into();
        vague.acceptance_criteria = vec!["builds quickly".into()];
        let mut modal = requirement("REQ-BUILD-002");
        modal.text = "The CLI must print a summary.".into();
        let mut malformed = requirement("REQ-b-3");
        malformed.title = " ".into();
        let output = RequirementsOutput {
            requirements: vec![requirement("REQ-BUILD-001"), vague, modal, malformed],
        };
        let evaluation = evaluate(&output, 0.7);
        assert_eq!(
            evaluation.issues,
            vec![
                issue(
                    true,
                    "REQ-BUILD-002",
                    "id used by 2 requirements: give each its own"
                ),
                issue(
                    false,
                    "REQ-BUILD-002",
                    "1 acceptance criteria: give at least 2 testable ones"
                ),
                issue(
                    false,
                    "REQ-BUILD-002",
                    "text is not EARS: uses \"must\" instead of SHALL: write \"the <system> \
                     shall …\""
                ),
                issue(
                    false,
                    "REQ-b-3",
                    "malformed id: use REQ-<AREA>-<NNN>, AREA 2–12 uppercase letters or digits, \
                     NNN three digits (e.g. REQ-AUTH-001)"
                ),
                issue(false, "REQ-b-3", "no title"),
            ]
        );
        assert_eq!(
            evaluation.warnings,
            vec![
                "REQ-BUILD-002: vague wording (fast, user-friendly, quickly): state a measurable \
                 condition instead"
                    .to_string()
            ]
        );
        // ids 1/4, ears 3/4, criteria 3.5/4, clarity 3/4, titles 3/4: above 0.7, blocked all the same
        assert_eq!(evaluation.score, 0.7063);
        assert!(!evaluation.passed);
    }

    #[test]
    fn a_low_score_alone_fails() {
        let mut bad = requirement("REQ-BUILD-001");
        bad.text = "Notes are turned into pages.".into();
        bad.acceptance_criteria = vec![];
        let evaluation = evaluate(
            &RequirementsOutput {
                requirements: vec![bad],
            },
            0.7,
        );
        assert!(evaluation.issues.iter().all(|i| !i.blocking));
        assert_eq!((evaluation.score, evaluation.passed), (0.35, false));
    }

    #[test]
    fn no_requirements_is_blocking() {
        let evaluation = evaluate(
            &RequirementsOutput {
                requirements: vec![],
            },
            0.0,
        );
        assert_eq!(
            evaluation.issues,
            vec![issue(
                true,
                "requirements",
                "no requirements: state what the feature must do as EARS requirements"
            )]
        );
        assert_eq!((evaluation.score, evaluation.passed), (0.0, false));
    }
}
