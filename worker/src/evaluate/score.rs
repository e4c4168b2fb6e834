//! The scoring machinery every evaluator shares: named weighted criteria, issues and warnings,
//! finished into an [`Evaluation`] against a threshold.

use omoi_protocol::eval::{Criterion, EarsReading, Evaluation, Issue};
use omoi_protocol::phase::Phase;

/// Collects the findings of one evaluator run.
#[derive(Debug)]
pub(crate) struct Scorecard {
    phase: Phase,
    criteria: Vec<Criterion>,
    issues: Vec<Issue>,
    warnings: Vec<String>,
    ears: Vec<EarsReading>,
}

impl Scorecard {
    pub(crate) fn new(phase: Phase) -> Self {
        Scorecard {
            phase,
            criteria: Vec::new(),
            issues: Vec::new(),
            warnings: Vec::new(),
            ears: Vec::new(),
        }
    }

    /// Records a criterion; its score is clamped to 0..=1 (NaN counts as 0).
    pub(crate) fn criterion(
        &mut self,
        name: &str,
        weight: f64,
        score: f64,
        detail: impl Into<String>,
    ) {
        self.criteria.push(Criterion {
            name: name.to_string(),
            weight,
            score: round(clamp_unit(score)),
            detail: detail.into(),
        });
    }

    /// Records an issue that fails the gate whatever the score.
    pub(crate) fn blocking(&mut self, subject: Option<&str>, message: impl Into<String>) {
        self.push_issue(true, subject, message.into());
    }

    /// Records an issue that costs score but does not fail the gate by itself.
    pub(crate) fn issue(&mut self, subject: Option<&str>, message: impl Into<String>) {
        self.push_issue(false, subject, message.into());
    }

    /// Records how a requirement reads as EARS.
    pub(crate) fn ears(&mut self, reading: EarsReading) {
        self.ears.push(reading);
    }

    pub(crate) fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    fn push_issue(&mut self, blocking: bool, subject: Option<&str>, message: String) {
        self.issues.push(Issue {
            blocking,
            subject: subject.map(str::to_string),
            message,
        });
    }

    /// The weighted sum of the criteria (clamped to 0..=1); passed when it reaches `threshold`
    /// and no issue is blocking.
    pub(crate) fn finish(self, threshold: f64) -> Evaluation {
        let total: f64 = self.criteria.iter().map(|c| c.weight * c.score).sum();
        let score = round(clamp_unit(total));
        let blocked = self.issues.iter().any(|i| i.blocking);
        Evaluation {
            phase: self.phase,
            score,
            passed: score >= threshold && !blocked,
            criteria: self.criteria,
            issues: self.issues,
            warnings: self.warnings,
            ears: self.ears,
        }
    }
}

/// `ok / total` as a score; an empty set scores `empty`.
pub(crate) fn share(ok: usize, total: usize, empty: f64) -> f64 {
    if total == 0 {
        empty
    } else {
        ok as f64 / total as f64
    }
}

/// A score for free text: 0 when blank or a placeholder such as "n/a" or "TBD", otherwise the
/// share of `full_words` words it has (capped at 1).
pub(crate) fn text_score(text: &str, full_words: usize) -> f64 {
    if is_placeholder(text) {
        return 0.0;
    }
    share(word_count(text).min(full_words), full_words, 1.0)
}

/// Blank, or a stand-in for content ("n/a", "none", "TBD", "-", …).
pub(crate) fn is_placeholder(text: &str) -> bool {
    const PLACEHOLDERS: [&str; 10] = [
        "",
        "-",
        "n/a",
        "na",
        "none",
        "tbd",
        "todo",
        "nothing",
        "not applicable",
        "...",
    ];
    let normal = text
        .trim()
        .trim_end_matches('.')
        .trim()
        .to_ascii_lowercase();
    PLACEHOLDERS.contains(&normal.as_str()) || normal.chars().all(|c| !c.is_alphanumeric())
}

pub(crate) fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The non-blank entries of a list.
pub(crate) fn non_blank(items: &[String]) -> usize {
    items.iter().filter(|s| !s.trim().is_empty()).count()
}

/// Ids joined for a message: `A, B, C`.
pub(crate) fn list(ids: &[impl AsRef<str>]) -> String {
    ids.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// Four decimals: enough to rank, short enough to read.
fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn finish_weighs_clamps_and_gates() {
        let mut card = Scorecard::new(Phase::Design);
        card.criterion("a", 0.5, 1.5, "over");
        card.criterion("b", 0.25, 2.0 / 3.0, "third");
        card.criterion("c", 0.25, f64::NAN, "nan");
        card.warn("careful");
        let evaluation = card.finish(0.6);
        assert_eq!(
            evaluation,
            Evaluation {
                phase: Phase::Design,
                score: 0.6667,
                passed: true,
                criteria: vec![
                    Criterion {
                        name: "a".into(),
                        weight: 0.5,
                        score: 1.0,
                        detail: "over".into()
                    },
                    Criterion {
                        name: "b".into(),
                        weight: 0.25,
                        score: 0.6667,
                        detail: "third".into()
                    },
                    Criterion {
                        name: "c".into(),
                        weight: 0.25,
                        score: 0.0,
                        detail: "nan".into()
                    },
                ],
                issues: vec![],
                warnings: vec!["careful".into()],
                ears: vec![],
            }
        );
    }

    #[test]
    fn a_blocking_issue_fails_a_perfect_score_and_a_plain_issue_does_not() {
        let mut card = Scorecard::new(Phase::Tasks);
        card.criterion("all", 1.0, 1.0, "");
        card.issue(Some("TSK-001"), "minor");
        assert!(card.finish(0.7).passed);

        let mut card = Scorecard::new(Phase::Tasks);
        card.criterion("all", 1.0, 1.0, "");
        card.blocking(None, "cycle");
        let evaluation = card.finish(0.7);
        assert_eq!((evaluation.score, evaluation.passed), (1.0, false));
    }

    #[test]
    fn below_threshold_fails() {
        let mut card = Scorecard::new(Phase::Explore);
        card.criterion("all", 1.0, 0.69, "");
        assert!(!card.finish(0.7).passed);
    }

    #[test]
    fn text_scores() {
        assert_eq!(text_score("  N/A. ", 5), 0.0);
        assert_eq!(text_score("TBD", 5), 0.0);
        assert_eq!(text_score("---", 5), 0.0);
        assert_eq!(text_score("two words", 4), 0.5);
        assert_eq!(text_score("one two three four five six", 4), 1.0);
        assert_eq!(share(0, 0, 0.25), 0.25);
        assert_eq!(list(&["A", "B"]), "A, B");
    }
}
