//! EARS (Easy Approach to Requirements Syntax): how a requirement text reads — its pattern, its
//! precondition clauses, the system and the response — or what keeps it from being EARS, and
//! which vague words it uses.
//!
//! Accepted shapes, one SHALL each, keywords in any case: ubiquitous `The <system> shall
//! <response>`; event-driven `When <trigger>, the <system> shall …`; state-driven `While <state>,
//! …`; unwanted `If <condition>, then the <system> shall …`; optional `Where <feature>, …`;
//! complex: more than one precondition clause, e.g. `While <state>, when <trigger>, the <system>
//! shall …`. The comma before the system may be left out, and THEN may follow any precondition
//! (Kiro writes `WHEN <trigger> THEN the system SHALL <response>`). A keyword opens a new clause at
//! the start, after a comma, or when written in capitals.
//!
//! The text before SHALL must read as a system's name: a noun phrase without a verb, a condition,
//! a pronoun, a person or a lead-in word. The response must be active (not `shall be logged`) and
//! must not carry a condition of its own (`shall retry when the network returns`).

pub mod corpus;
mod words;

pub use omoi_protocol::eval::{EarsClause, EarsKeyword, EarsPattern};

use words::{
    ACTORS, BURIED_TRIGGERS, DETERMINERS, NOISE, NON_EARS_OPENERS, OTHER_MODALS, PRONOUNS, VERBS,
    Word, is_adverb, is_participle, words,
};

/// How a text reads as EARS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub pattern: EarsPattern,
    pub clauses: Vec<EarsClause>,
    pub system: String,
    pub response: String,
}

/// Why a text is not an EARS requirement. Each message says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EarsError {
    #[error("the text is empty: write one requirement as \"The <system> shall <response>\"")]
    Empty,
    #[error("has no SHALL: state what the system shall do (\"The <system> shall <response>\")")]
    NoShall,
    #[error("uses \"{modal}\" instead of SHALL: write \"the <system> shall …\"")]
    WrongModal { modal: String },
    #[error("has {count} SHALLs: state exactly one requirement (one SHALL) per text")]
    MultipleShall { count: usize },
    #[error("nothing follows SHALL: state the system's response")]
    NoResponse,
    #[error("nothing precedes SHALL: name the system that acts (\"The <system> shall …\")")]
    NoSystem,
    #[error(
        "the {keyword} clause runs into SHALL without naming the system that responds: write \
         \"{keyword} <…>, the <system> shall …\""
    )]
    MissingSystem { keyword: EarsKeyword },
    #[error("the {keyword} clause is empty: state its condition after {keyword}")]
    EmptyPrecondition { keyword: EarsKeyword },
    #[error(
        "starts with \"{word}\", which is not an EARS keyword: open the condition with WHEN \
         (event), WHILE (state), IF … THEN (unwanted behaviour) or WHERE (optional feature)"
    )]
    NotAPrecondition { word: String },
    #[error(
        "starts with THEN, which follows a condition: drop it, or add the condition (\"If \
         <condition>, then the <system> shall …\")"
    )]
    ThenWithoutCondition,
    #[error(
        "\"{word}\" stands before the system's name: drop it and start with the system (\"The \
         <system> shall …\") or with a precondition keyword"
    )]
    LeadIn { word: String },
    #[error(
        "a condition (\"{word} …\") stands between the system and SHALL: put it first \
         (\"{keyword} <…>, the <system> shall …\")"
    )]
    TriggerInSystem { word: String, keyword: EarsKeyword },
    #[error(
        "\"{text}\" before SHALL is a clause, not a system's name (it has the verb \"{verb}\"): \
         name the system (\"The <system> shall …\") and move the rest into a precondition or the \
         response"
    )]
    NotASystem { text: String, verb: String },
    #[error(
        "\"{word}\" stands where the system's name belongs: name the system (\"The <system> \
         shall …\")"
    )]
    Pronoun { word: String },
    #[error(
        "the subject \"{text}\" is a person, not the system: state what the system does for them \
         (\"The <system> shall let the {person} …\")"
    )]
    PersonAsSystem { text: String, person: String },
    #[error(
        "passive voice (\"shall {phrase}\") hides who acts: make the system that does it the \
         subject (\"The <system> shall <verb> …\")"
    )]
    Passive { phrase: String },
    #[error(
        "a condition (\"{word} …\") is buried after the response: put it first (\"{keyword} <…>, \
         the <system> shall …\")"
    )]
    BuriedTrigger { word: String, keyword: EarsKeyword },
}

/// The EARS pattern of `text`, or what keeps it from being one.
pub fn classify(text: &str) -> Result<EarsPattern, EarsError> {
    read(text).map(|reading| reading.pattern)
}

/// How `text` reads as EARS, or what keeps it from being EARS.
pub fn read(text: &str) -> Result<Reading, EarsError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(EarsError::Empty);
    }
    let all = words(text);
    let shalls: Vec<usize> = (0..all.len())
        .filter(|&i| !all[i].quoted && all[i].lower == "shall")
        .collect();
    let at = match shalls.as_slice() {
        [] => {
            return Err(
                match all
                    .iter()
                    .find(|w| !w.quoted && OTHER_MODALS.contains(&w.lower.as_str()))
                {
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
    let response_words = &all[at + 1..];
    let response = text[all[at].end..]
        .trim()
        .trim_end_matches(['.', ';'])
        .trim();
    if response_words.is_empty() {
        return Err(EarsError::NoResponse);
    }
    let prefix = &all[..at];
    let Some(first) = prefix.first() else {
        return Err(EarsError::NoSystem);
    };
    let (clauses, system) = match keyword(first) {
        Some(_) => preconditions(text, prefix, all[at].after_comma)?,
        None if first.lower == "then" => return Err(EarsError::ThenWithoutCondition),
        None if NON_EARS_OPENERS.contains(&first.lower.as_str()) => {
            return Err(EarsError::NotAPrecondition {
                word: text
                    .get(first.start..first.end)
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        None => (Vec::new(), prefix),
    };
    check_system(text, system)?;
    check_response(text, response_words)?;
    let pattern = match clauses.as_slice() {
        [] => EarsPattern::Ubiquitous,
        [one] => match one.keyword {
            EarsKeyword::When => EarsPattern::EventDriven,
            EarsKeyword::While => EarsPattern::StateDriven,
            EarsKeyword::If => EarsPattern::Unwanted,
            EarsKeyword::Where => EarsPattern::Optional,
        },
        _ => EarsPattern::Complex,
    };
    Ok(Reading {
        pattern,
        clauses,
        system: span(text, system),
        response: response.to_string(),
    })
}

fn keyword(word: &Word) -> Option<EarsKeyword> {
    if word.quoted {
        return None;
    }
    match word.lower.as_str() {
        "when" => Some(EarsKeyword::When),
        "while" => Some(EarsKeyword::While),
        "if" => Some(EarsKeyword::If),
        "where" => Some(EarsKeyword::Where),
        _ => None,
    }
}

/// The keyword a condition word stands for when it is misplaced.
fn keyword_for(word: &str) -> EarsKeyword {
    match word {
        "while" | "during" | "until" => EarsKeyword::While,
        "if" | "unless" => EarsKeyword::If,
        "where" => EarsKeyword::Where,
        _ => EarsKeyword::When,
    }
}

/// The text from the first to the last of `words`, with the quotes and brackets around them,
/// trimmed of commas.
fn span(text: &str, words: &[Word]) -> String {
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return String::new();
    };
    const OPENING: &[char] = &['"', '`', '(', '[', '“', '‘', '\''];
    const CLOSING: &[char] = &['"', '`', ')', ']', '”', '’', '\''];
    let before = text.get(..first.start).unwrap_or_default();
    let start = first.start - (before.len() - before.trim_end_matches(OPENING).len());
    let after = text.get(last.end..).unwrap_or_default();
    let end = last.end + (after.len() - after.trim_start_matches(CLOSING).len());
    text.get(start..end)
        .unwrap_or_default()
        .trim_matches([',', ';', ' '])
        .to_string()
}

/// Splits the words before SHALL, which start with a keyword, into the precondition clauses and
/// the system's name.
fn preconditions<'w>(
    text: &str,
    prefix: &'w [Word],
    comma_before_shall: bool,
) -> Result<(Vec<EarsClause>, &'w [Word]), EarsError> {
    // Where each clause starts (its keyword's index); a THEN ends the last one.
    let mut starts: Vec<(usize, EarsKeyword)> = Vec::new();
    let mut then = None;
    for (i, word) in prefix.iter().enumerate() {
        if let Some(k) = keyword(word) {
            if i == 0 || word.after_comma || word.capitals {
                starts.push((i, k));
                then = None;
            }
        } else if !word.quoted && word.lower == "then" && i > 0 {
            then = Some(i);
        }
    }
    let mut clauses = Vec::new();
    let last = starts.len().saturating_sub(1);
    let mut system: &[Word] = &[];
    for (n, &(start, keyword)) in starts.iter().enumerate() {
        let end = match starts.get(n + 1) {
            Some(&(next, _)) => next,
            None => then.unwrap_or(prefix.len()),
        };
        let mut body = &prefix[start + 1..end];
        if n == last {
            match then {
                Some(t) => system = &prefix[t + 1..],
                None if comma_before_shall => {
                    return Err(EarsError::MissingSystem { keyword });
                }
                None => {
                    let split =
                        system_start(text, body).ok_or(EarsError::MissingSystem { keyword })?;
                    system = &body[split..];
                    body = &body[..split];
                }
            }
            if system.is_empty() {
                return Err(EarsError::MissingSystem { keyword });
            }
        }
        if body.is_empty() {
            return Err(EarsError::EmptyPrecondition { keyword });
        }
        clauses.push(EarsClause {
            keyword,
            text: span(text, body),
        });
    }
    Ok((clauses, system))
}

/// Where the system's name starts in the last clause's words when no THEN marks it: after the last
/// comma when what follows reads as a name; else a run of capitalised words at the end (`Omoi`,
/// `THE SYSTEM`), with its determiner; else the last determiner (`… the system`).
fn system_start(text: &str, body: &[Word]) -> Option<usize> {
    let after_comma = (0..body.len()).rev().find(|&i| body[i].after_comma);
    let from = match after_comma {
        Some(i) if names_a_system(text, &body[i..]) => return Some(i),
        Some(i) => i,
        None => 1,
    };
    let capital = |w: &Word| w.capitalised && !w.quoted;
    let mut start = body.len();
    while start > from && capital(&body[start - 1]) && keyword(&body[start - 1]).is_none() {
        start -= 1;
    }
    if start < body.len() {
        if start > from && DETERMINERS.contains(&body[start - 1].lower.as_str()) {
            start -= 1;
        }
        return Some(start);
    }
    (from..body.len())
        .rev()
        .find(|&i| !body[i].quoted && DETERMINERS.contains(&body[i].lower.as_str()))
}

/// Whether `words` read as a system's name (see [`check_system`]).
fn names_a_system(text: &str, words: &[Word]) -> bool {
    !words.is_empty() && check_system(text, words).is_ok()
}

/// The text before SHALL must name the system: a noun phrase, no verb, no condition, not a pronoun
/// or a person, no lead-in word.
fn check_system(text: &str, system: &[Word]) -> Result<(), EarsError> {
    let Some(first) = system.first() else {
        return Err(EarsError::NoSystem);
    };
    let original = |w: &Word| text.get(w.start..w.end).unwrap_or(&w.lower).to_string();
    let unquoted = || system.iter().filter(|w| !w.quoted);
    let lead_in = NOISE.contains(&first.lower.as_str())
        || (first.lower.len() > 4
            && first.lower.ends_with("ly")
            && system.get(1).is_some_and(|next| {
                next.after_comma || DETERMINERS.contains(&next.lower.as_str())
            }));
    if lead_in && system.len() > 1 {
        return Err(EarsError::LeadIn {
            word: original(first),
        });
    }
    const CONDITIONS: [&str; 12] = [
        "when", "while", "if", "where", "once", "after", "before", "unless", "whenever", "upon",
        "until", "during",
    ];
    if let Some(w) = unquoted().find(|w| CONDITIONS.contains(&w.lower.as_str())) {
        return Err(EarsError::TriggerInSystem {
            word: original(w),
            keyword: keyword_for(&w.lower),
        });
    }
    if let [only] = system
        && PRONOUNS.contains(&only.lower.as_str())
    {
        return Err(EarsError::Pronoun {
            word: original(only),
        });
    }
    if let Some(w) = unquoted().find(|w| VERBS.contains(&w.lower.as_str())) {
        return Err(EarsError::NotASystem {
            text: span(text, system),
            verb: original(w),
        });
    }
    if let Some(head) = system.last()
        && ACTORS.contains(&head.lower.as_str())
    {
        return Err(EarsError::PersonAsSystem {
            text: span(text, system),
            person: head.lower.trim_end_matches('s').to_string(),
        });
    }
    Ok(())
}

/// The response must be active and carry no condition of its own.
fn check_response(text: &str, response: &[Word]) -> Result<(), EarsError> {
    let mut rest = response.iter().skip_while(|w| is_adverb(&w.lower));
    if let Some(be) = rest.next()
        && be.lower == "be"
        && let Some(verb) = rest.find(|w| !is_adverb(&w.lower))
        && is_participle(&verb.lower)
    {
        return Err(EarsError::Passive {
            phrase: text.get(be.start..verb.end).unwrap_or_default().to_string(),
        });
    }
    const ASKING: [&str; 12] = [
        "check",
        "checks",
        "verify",
        "determine",
        "ask",
        "asks",
        "test",
        "tell",
        "know",
        "see",
        "decide",
        "whether",
    ];
    for (i, w) in response.iter().enumerate() {
        if w.quoted || !BURIED_TRIGGERS.contains(&w.lower.as_str()) {
            continue;
        }
        let asking = w.lower == "if" && i > 0 && ASKING.contains(&response[i - 1].lower.as_str());
        // "retry once", "once more", "once a day": a count, not a trigger.
        let counting = w.lower == "once"
            && response.get(i + 1).is_none_or(|next| {
                next.after_comma
                    || ["more", "again", "a", "an", "per", "every"].contains(&next.lower.as_str())
            });
        if !asking && !counting {
            return Err(EarsError::BuriedTrigger {
                word: text.get(w.start..w.end).unwrap_or_default().to_string(),
                keyword: keyword_for(&w.lower),
            });
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests;
