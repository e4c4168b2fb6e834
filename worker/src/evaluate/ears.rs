//! EARS (Easy Approach to Requirements Syntax): which pattern a requirement text follows, why a text
//! is not EARS, and which vague words it uses.
//!
//! Accepted shapes, one SHALL each, keywords case-insensitive:
//! ubiquitous `The <system> shall <response>`; event-driven `When <trigger>, the <system> shall …`;
//! state-driven `While <state>, …`; unwanted `If <condition>, then the <system> shall …` (THEN may be
//! left out); optional `Where <feature>, …`; complex: more than one precondition clause, e.g.
//! `While <state>, when <trigger>, the <system> shall …`. A comma (or THEN after IF) separates the
//! last precondition from the system; commas inside a precondition are allowed.

use std::fmt;

/// The EARS pattern of a requirement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EarsPattern {
    Ubiquitous,
    EventDriven,
    StateDriven,
    Unwanted,
    Optional,
    Complex,
}

impl fmt::Display for EarsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EarsPattern::Ubiquitous => "ubiquitous",
            EarsPattern::EventDriven => "event-driven",
            EarsPattern::StateDriven => "state-driven",
            EarsPattern::Unwanted => "unwanted behaviour",
            EarsPattern::Optional => "optional feature",
            EarsPattern::Complex => "complex",
        })
    }
}

/// Why a text is not an EARS requirement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EarsError {
    #[error("the text is empty")]
    Empty,
    #[error("has no SHALL: state what the system shall do (\"The <system> shall <response>\")")]
    NoShall,
    #[error("uses \"{modal}\" instead of SHALL: write \"the <system> shall …\"")]
    WrongModal { modal: String },
    #[error("has {count} SHALLs: state exactly one requirement (one SHALL) per text")]
    MultipleShall { count: usize },
    #[error("nothing follows SHALL: state the system's response")]
    NoResponse,
    #[error("nothing precedes SHALL: name the system (\"The <system> shall …\")")]
    NoSystem,
    #[error(
        "the {keyword} clause runs into SHALL without naming the system: write \
         \"{keyword} <…>, the <system> shall …\" (a comma before the system)"
    )]
    TriggerWithoutSystem { keyword: String },
    #[error("the {keyword} clause is empty: state its condition")]
    EmptyPrecondition { keyword: String },
    #[error(
        "starts with \"{word}\": an EARS precondition starts with WHEN (event), WHILE (state), \
         IF … THEN (unwanted behaviour) or WHERE (optional feature)"
    )]
    NotAPrecondition { word: String },
    #[error("THEN without IF: THEN belongs to \"If <condition>, then the <system> shall …\"")]
    ThenWithoutIf,
}

/// The EARS pattern of `text`, or what keeps it from being one.
pub fn classify(text: &str) -> Result<EarsPattern, EarsError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(EarsError::Empty);
    }
    let words = words(text);
    let shalls: Vec<&Word> = words.iter().filter(|w| w.lower == "shall").collect();
    let shall = match shalls.as_slice() {
        [] => {
            const MODALS: [&str; 5] = ["should", "must", "will", "may", "can"];
            return Err(
                match words.iter().find(|w| MODALS.contains(&w.lower.as_str())) {
                    Some(w) => EarsError::WrongModal {
                        modal: w.lower.clone(),
                    },
                    None => EarsError::NoShall,
                },
            );
        }
        [one] => *one,
        many => return Err(EarsError::MultipleShall { count: many.len() }),
    };
    if !text[shall.end..].chars().any(char::is_alphanumeric) {
        return Err(EarsError::NoResponse);
    }
    let prefix = text[..shall.start].trim();
    if prefix.is_empty() {
        return Err(EarsError::NoSystem);
    }
    let (preconditions, system) = split_prefix(prefix)?;
    let system = system.trim();
    let system = match first_word(system) {
        Some(w) if w.lower == "then" => {
            if !preconditions.contains(&Keyword::If) {
                return Err(EarsError::ThenWithoutIf);
            }
            system[w.end..].trim()
        }
        _ => system,
    };
    if !system.chars().any(char::is_alphanumeric) {
        return Err(match preconditions.last() {
            Some(k) => EarsError::TriggerWithoutSystem {
                keyword: k.to_string(),
            },
            None => EarsError::NoSystem,
        });
    }
    Ok(match preconditions.as_slice() {
        [] => EarsPattern::Ubiquitous,
        [Keyword::When] => EarsPattern::EventDriven,
        [Keyword::While] => EarsPattern::StateDriven,
        [Keyword::If] => EarsPattern::Unwanted,
        [Keyword::Where] => EarsPattern::Optional,
        _ => EarsPattern::Complex,
    })
}

/// The vague terms in `text`, in order of first appearance, each once.
pub fn vague_terms(text: &str) -> Vec<String> {
    const VAGUE: &[&str] = &[
        "as soon as possible",
        "as appropriate",
        "as needed",
        "as necessary",
        "if possible",
        "where possible",
        "user friendly",
        "user-friendly",
        "and/or",
        "etc",
        "fast",
        "quick",
        "quickly",
        "easy",
        "easily",
        "appropriate",
        "appropriately",
        "robust",
        "flexible",
        "efficient",
        "efficiently",
        "sufficient",
        "sufficiently",
        "adequate",
        "adequately",
        "reasonable",
        "reasonably",
        "intuitive",
        "seamless",
        "seamlessly",
        "simple",
        "optimal",
        "normally",
        "typically",
        "usually",
        "various",
    ];
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '/'))
        .filter(|t| !t.is_empty())
        .collect();
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let longest = VAGUE
            .iter()
            .map(|term| (term, term.split(' ').collect::<Vec<_>>()))
            .filter(|(_, parts)| tokens[i..].starts_with(parts))
            .max_by_key(|(_, parts)| parts.len());
        match longest {
            Some((term, parts)) => {
                if !found.iter().any(|f| f == term) {
                    found.push(term.to_string());
                }
                i += parts.len();
            }
            None => i += 1,
        }
    }
    found
}

/// A precondition keyword of EARS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    When,
    While,
    If,
    Where,
}

impl Keyword {
    fn parse(word: &str) -> Option<Keyword> {
        match word {
            "when" => Some(Keyword::When),
            "while" => Some(Keyword::While),
            "if" => Some(Keyword::If),
            "where" => Some(Keyword::Where),
            _ => None,
        }
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Keyword::When => "WHEN",
            Keyword::While => "WHILE",
            Keyword::If => "IF",
            Keyword::Where => "WHERE",
        })
    }
}

/// Words that open a condition in English but not in EARS.
const NON_EARS_OPENERS: [&str; 16] = [
    "once", "after", "upon", "before", "during", "unless", "whenever", "until", "since", "as",
    "in", "on", "for", "given", "whether", "because",
];

/// Splits the text before SHALL into its precondition keywords and the system clause.
fn split_prefix(prefix: &str) -> Result<(Vec<Keyword>, &str), EarsError> {
    let segments: Vec<&str> = prefix
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let Some(first) = segments.first() else {
        return Err(EarsError::NoSystem);
    };
    let opener = first_word(first);
    if opener
        .as_ref()
        .and_then(|w| Keyword::parse(&w.lower))
        .is_none()
    {
        if let Some(word) = opener.filter(|w| NON_EARS_OPENERS.contains(&w.lower.as_str())) {
            return Err(EarsError::NotAPrecondition {
                word: first[..word.end].to_string(),
            });
        }
        return Ok((Vec::new(), prefix));
    }
    let mut keywords = Vec::new();
    let mut system = "";
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        let opener = first_word(segment);
        let keyword = opener
            .as_ref()
            .and_then(|w| Keyword::parse(&w.lower).map(|k| (k, w.end)));
        match keyword {
            Some((keyword, end)) => {
                let body = segment[end..].trim();
                let (body, rest) = match keyword {
                    Keyword::If => split_then(body),
                    _ => (body, ""),
                };
                if !body.chars().any(char::is_alphanumeric) {
                    return Err(EarsError::EmptyPrecondition {
                        keyword: keyword.to_string(),
                    });
                }
                keywords.push(keyword);
                if !rest.is_empty() {
                    if index != last {
                        return Err(EarsError::ThenWithoutIf);
                    }
                    system = rest;
                }
            }
            // A middle segment continues the precondition before it; the last names the system.
            None if index == last => system = segment,
            None => {}
        }
    }
    Ok((keywords, system))
}

/// Splits `X then the system` into `X` and `the system`; no THEN leaves the rest empty.
fn split_then(body: &str) -> (&str, &str) {
    match words(body).iter().find(|w| w.lower == "then") {
        Some(then) => (body[..then.start].trim(), body[then.end..].trim()),
        None => (body, ""),
    }
}

/// A word of the text: its byte span and lowercase form.
#[derive(Debug)]
struct Word {
    start: usize,
    end: usize,
    lower: String,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        let in_word = c.is_alphanumeric() || c == '_';
        match (start, in_word) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push(Word {
                    start: s,
                    end: i,
                    lower: text[s..i].to_lowercase(),
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// The word `text` starts with (`text` is trimmed), if it starts with one.
fn first_word(text: &str) -> Option<Word> {
    words(text).into_iter().next().filter(|w| w.start == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn every_pattern_is_recognised() {
        let cases = [
            ("The CLI shall print the version.", EarsPattern::Ubiquitous),
            (
                "the worker SHALL not write outside the workspace",
                EarsPattern::Ubiquitous,
            ),
            (
                "The parser, lexer and checker shall report byte offsets.",
                EarsPattern::Ubiquitous,
            ),
            (
                "When the user submits the form, the system shall store the entry.",
                EarsPattern::EventDriven,
            ),
            (
                "When the user selects red, green or blue, the UI shall repaint the swatch.",
                EarsPattern::EventDriven,
            ),
            (
                "While the upload is in progress, the page shall show a bar.",
                EarsPattern::StateDriven,
            ),
            (
                "If the disk is full, then the worker shall stop with exit code 3.",
                EarsPattern::Unwanted,
            ),
            (
                "If the disk is full then the worker shall stop.",
                EarsPattern::Unwanted,
            ),
            (
                "IF the token expired, the API shall answer 401.",
                EarsPattern::Unwanted,
            ),
            (
                "Where dark mode is enabled, the app shall use the dark palette.",
                EarsPattern::Optional,
            ),
            (
                "While offline, when the user saves, the app shall queue the change.",
                EarsPattern::Complex,
            ),
            (
                "Where sync is enabled, if the server rejects a change, then the app shall keep the local copy.",
                EarsPattern::Complex,
            ),
        ];
        for (text, pattern) in cases {
            assert_eq!(classify(text), Ok(pattern), "{text}");
        }
    }

    #[test]
    fn non_ears_texts_are_rejected_with_the_reason() {
        let cases = [
            ("   ", EarsError::Empty),
            ("Login page with a remember-me box.", EarsError::NoShall),
            (
                "The system should log every request.",
                EarsError::WrongModal {
                    modal: "should".into(),
                },
            ),
            (
                "Users must be able to log in.",
                EarsError::WrongModal {
                    modal: "must".into(),
                },
            ),
            (
                "The system will send an email.",
                EarsError::WrongModal {
                    modal: "will".into(),
                },
            ),
            (
                "The system shall log in users and shall send a welcome email.",
                EarsError::MultipleShall { count: 2 },
            ),
            ("The system shall.", EarsError::NoResponse),
            ("Shall export a CSV file.", EarsError::NoSystem),
            (
                "When the user clicks save the system shall store the file.",
                EarsError::TriggerWithoutSystem {
                    keyword: "WHEN".into(),
                },
            ),
            (
                "When the user clicks save, shall store the file.",
                EarsError::TriggerWithoutSystem {
                    keyword: "WHEN".into(),
                },
            ),
            (
                "When , the system shall beep.",
                EarsError::EmptyPrecondition {
                    keyword: "WHEN".into(),
                },
            ),
            (
                "Once the file is saved, the system shall close it.",
                EarsError::NotAPrecondition {
                    word: "Once".into(),
                },
            ),
            (
                "After login the app shall show the dashboard.",
                EarsError::NotAPrecondition {
                    word: "After".into(),
                },
            ),
            (
                "When the user logs out, then the app shall clear the cache.",
                EarsError::ThenWithoutIf,
            ),
        ];
        for (text, error) in cases {
            assert_eq!(classify(text), Err(error), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            EarsError::WrongModal {
                modal: "must".into()
            }
            .to_string(),
            "uses \"must\" instead of SHALL: write \"the <system> shall …\""
        );
        assert_eq!(
            EarsError::TriggerWithoutSystem {
                keyword: "WHEN".into()
            }
            .to_string(),
            "the WHEN clause runs into SHALL without naming the system: write \
             \"WHEN <…>, the <system> shall …\" (a comma before the system)"
        );
    }

    #[test]
    fn shall_is_a_whole_word() {
        assert_eq!(
            classify("The pool shall stay shallow."),
            Ok(EarsPattern::Ubiquitous)
        );
        assert_eq!(classify("A shallow copy."), Err(EarsError::NoShall));
    }

    #[test]
    fn vague_terms_are_found_once_in_order_preferring_phrases() {
        assert_eq!(
            vague_terms(
                "The UI shall be fast, user-friendly and robust; retry as appropriate, etc. Fast!"
            ),
            vec!["fast", "user-friendly", "robust", "as appropriate", "etc"]
        );
        assert_eq!(
            vague_terms("Respond as soon as possible."),
            vec!["as soon as possible"]
        );
        assert_eq!(
            vague_terms("The API shall answer within 200 ms at the 99th percentile."),
            Vec::<String>::new()
        );
        assert_eq!(vague_terms("breakfast and steady"), Vec::<String>::new());
    }
}
