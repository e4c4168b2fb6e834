//! The words of a requirement text and the word lists the EARS reading judges them by.

/// A word of the text: its byte span, its lowercase form, whether it is written in capitals, and
/// whether it stands inside quotes (quoted words are content, never keywords).
#[derive(Debug, Clone)]
pub(super) struct Word {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) lower: String,
    pub(super) capitals: bool,
    /// The first letter is a capital.
    pub(super) capitalised: bool,
    pub(super) quoted: bool,
    /// A comma or semicolon stands between the previous word and this one.
    pub(super) after_comma: bool,
}

/// The words of `text`, in order. Quotes are `"…"`, `“…”` and `` `…` ``.
pub(super) fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    let mut comma = false;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        let in_word = c.is_alphanumeric() || c == '_' || (c == '\'' && start.is_some());
        match (start, in_word) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let raw = text[s..i].trim_end_matches('\'');
                out.push(Word {
                    start: s,
                    end: s + raw.len(),
                    lower: raw.to_lowercase(),
                    capitals: raw.chars().any(char::is_alphabetic)
                        && !raw.chars().any(char::is_lowercase),
                    capitalised: raw.chars().next().is_some_and(char::is_uppercase),
                    quoted,
                    after_comma: comma,
                });
                start = None;
                comma = false;
            }
            _ => {}
        }
        if !in_word {
            match c {
                '"' | '`' => quoted = !quoted,
                '“' => quoted = true,
                '”' => quoted = false,
                ',' | ';' if !quoted => comma = true,
                _ => {}
            }
        }
    }
    out
}

/// Modal verbs people write instead of SHALL.
pub(super) const OTHER_MODALS: [&str; 6] = ["should", "must", "will", "may", "can", "needs"];

/// Words that open a condition in English but not in EARS.
pub(super) const NON_EARS_OPENERS: [&str; 19] = [
    "once", "after", "upon", "before", "during", "unless", "whenever", "until", "since", "as",
    "in", "on", "for", "given", "whether", "because", "provided", "assuming", "by",
];

/// Words that put a condition into the response when they follow SHALL.
pub(super) const BURIED_TRIGGERS: [&str; 6] = ["when", "whenever", "while", "if", "once", "unless"];

/// Words that lead into a sentence without belonging to the system's name.
pub(super) const NOISE: [&str; 22] = [
    "also",
    "additionally",
    "furthermore",
    "moreover",
    "basically",
    "generally",
    "obviously",
    "note",
    "please",
    "however",
    "so",
    "thus",
    "therefore",
    "finally",
    "ideally",
    "hopefully",
    "actually",
    "really",
    "clearly",
    "certainly",
    "of",
    "then",
];

/// Verb forms that make the text before SHALL a clause rather than a name.
pub(super) const VERBS: [&str; 22] = [
    "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "do", "does", "did",
    "can", "could", "will", "would", "should", "may", "might", "must", "gets",
];

/// Pronouns and placeholders that stand where a system's name belongs.
pub(super) const PRONOUNS: [&str; 10] = [
    "it", "they", "we", "you", "i", "he", "she", "this", "that", "there",
];

/// People: a requirement whose subject is one of these states what a person does, not the system.
pub(super) const ACTORS: [&str; 18] = [
    "user",
    "users",
    "customer",
    "customers",
    "operator",
    "operators",
    "administrator",
    "administrators",
    "admin",
    "admins",
    "visitor",
    "visitors",
    "person",
    "people",
    "member",
    "members",
    "developer",
    "developers",
];

/// Words that begin a noun phrase naming a system when there is no comma to mark where it starts.
pub(super) const DETERMINERS: [&str; 9] = [
    "the", "a", "an", "each", "every", "all", "any", "its", "our",
];

/// Past participles that do not end in -ed.
const IRREGULAR_PARTICIPLES: [&str; 38] = [
    "sent",
    "shown",
    "kept",
    "written",
    "given",
    "taken",
    "done",
    "made",
    "built",
    "seen",
    "known",
    "hidden",
    "chosen",
    "driven",
    "held",
    "set",
    "put",
    "left",
    "lost",
    "found",
    "told",
    "sold",
    "paid",
    "bound",
    "split",
    "shut",
    "cut",
    "spent",
    "read",
    "run",
    "begun",
    "drawn",
    "thrown",
    "forbidden",
    "overridden",
    "rewritten",
    "withheld",
    "broken",
];

/// Whether `word` (lowercase) reads as a past participle.
pub(super) fn is_participle(word: &str) -> bool {
    (word.len() > 4 && word.ends_with("ed")) || IRREGULAR_PARTICIPLES.contains(&word)
}

/// Whether `word` (lowercase) reads as an adverb in -ly that can stand between "be" and a
/// participle ("be automatically logged").
pub(super) fn is_adverb(word: &str) -> bool {
    word.len() > 4 && word.ends_with("ly") || word == "not" || word == "also"
}
