//! Measures the EARS reading on a labelled corpus: precision and recall of "valid EARS", and how
//! often a valid sentence gets its labelled pattern.

use std::fmt::Write as _;

use super::{EarsPattern, classify};

/// What the reading got right and wrong on a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusScore {
    pub sentences: usize,
    /// Labelled valid and read as valid.
    pub true_positives: usize,
    /// Labelled invalid but read as valid.
    pub false_positives: usize,
    /// Labelled valid but rejected.
    pub false_negatives: usize,
    /// Valid sentences read with the labelled pattern.
    pub right_pattern: usize,
    /// One line per sentence the reading got wrong: label, verdict and the sentence.
    pub mistakes: Vec<String>,
}

impl CorpusScore {
    /// Of the sentences read as valid, the share labelled valid.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// Of the sentences labelled valid, the share read as valid.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// Of the valid sentences read as valid, the share read with the labelled pattern.
    pub fn pattern_accuracy(&self) -> f64 {
        ratio(self.right_pattern, self.true_positives)
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Reads a corpus of `<label><TAB><sentence>` lines (`#` starts a comment line) and scores the
/// reading on it. A label is a pattern (`ubiquitous`, `event-driven`, `state-driven`, `unwanted`,
/// `optional`, `complex`) or `invalid:<kind>`. A malformed line is an error naming its number.
pub fn measure(corpus: &str) -> Result<CorpusScore, String> {
    let mut score = CorpusScore {
        sentences: 0,
        true_positives: 0,
        false_positives: 0,
        false_negatives: 0,
        right_pattern: 0,
        mistakes: Vec::new(),
    };
    for (number, line) in corpus.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((label, sentence)) = line.split_once('\t') else {
            return Err(format!(
                "line {}: no tab between label and sentence",
                number + 1
            ));
        };
        let expected = match label {
            "ubiquitous" => Some(EarsPattern::Ubiquitous),
            "event-driven" => Some(EarsPattern::EventDriven),
            "state-driven" => Some(EarsPattern::StateDriven),
            "unwanted" => Some(EarsPattern::Unwanted),
            "optional" => Some(EarsPattern::Optional),
            "complex" => Some(EarsPattern::Complex),
            other if other.starts_with("invalid:") => None,
            other => return Err(format!("line {}: unknown label {other:?}", number + 1)),
        };
        score.sentences += 1;
        let verdict = classify(sentence);
        let mut mistake = |verdict: String| {
            let mut line = String::new();
            let _ = write!(line, "{label} read as {verdict}: {sentence}");
            score.mistakes.push(line);
        };
        match (expected, verdict) {
            (Some(want), Ok(got)) => {
                score.true_positives += 1;
                if want == got {
                    score.right_pattern += 1;
                } else {
                    mistake(got.to_string());
                }
            }
            (Some(_), Err(error)) => {
                score.false_negatives += 1;
                mistake(format!("invalid ({error})"));
            }
            (None, Ok(got)) => {
                score.false_positives += 1;
                mistake(got.to_string());
            }
            (None, Err(_)) => {}
        }
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const CORPUS: &str = include_str!("../../../../tests/fixtures/ears-corpus.tsv");

    #[test]
    fn the_corpus_is_read_as_a_requirements_engineer_would() {
        let score = measure(CORPUS).unwrap();
        println!(
            "EARS corpus: {} sentences, precision {:.3}, recall {:.3}, pattern {:.3}",
            score.sentences,
            score.precision(),
            score.recall(),
            score.pattern_accuracy()
        );
        for mistake in &score.mistakes {
            println!("  {mistake}");
        }
        assert!(score.sentences >= 200, "{}", score.sentences);
        assert!(score.precision() >= 0.95, "{:#?}", score.mistakes);
        assert!(score.recall() >= 0.95, "{:#?}", score.mistakes);
        assert!(score.pattern_accuracy() >= 0.95, "{:#?}", score.mistakes);
    }

    #[test]
    fn counts_each_outcome_and_refuses_malformed_lines() {
        let corpus = "# a comment\n\
            ubiquitous\tThe CLI shall print the version.\n\
            event-driven\tThe CLI shall print the version.\n\
            complex\tThe CLI should print.\n\
            invalid:passive\tThe CLI shall print the version.\n\
            invalid:no-shall\tA box.\n";
        let score = measure(corpus).unwrap();
        assert_eq!(
            score,
            CorpusScore {
                sentences: 5,
                true_positives: 2,
                false_positives: 1,
                false_negatives: 1,
                right_pattern: 1,
                mistakes: vec![
                    "event-driven read as ubiquitous: The CLI shall print the version.".into(),
                    "complex read as invalid (uses \"should\" instead of SHALL: write \"the \
                     <system> shall …\"): The CLI should print."
                        .into(),
                    "invalid:passive read as ubiquitous: The CLI shall print the version.".into(),
                ],
            }
        );
        assert_eq!(score.precision(), 2.0 / 3.0);
        assert_eq!(score.recall(), 2.0 / 3.0);
        assert_eq!(score.pattern_accuracy(), 0.5);
        assert_eq!(
            measure("ubiquitous The CLI shall print."),
            Err("line 1: no tab between label and sentence".into())
        );
        assert_eq!(
            measure("\nvalid\tThe CLI shall print."),
            Err("line 2: unknown label \"valid\"".into())
        );
    }
}
