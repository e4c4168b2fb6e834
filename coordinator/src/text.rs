//! Text a user stores and a terminal shows: names and titles refuse control and bidirectional
//! formatting characters; stored text is escaped before the CLI prints it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The bidirectional formatting characters (embeddings, overrides, isolates and marks) that
/// reorder what a terminal shows ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Checks a one-line name or title: no control character (NUL, ESC, BEL, newlines…) and no
/// bidirectional formatting character. The error names `field`.
pub fn check_line(field: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| is_unsafe(*c)) {
        Some(c) => Err(format!(
            "{field} must not contain control or bidirectional formatting characters \
             (found U+{:04X})",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// `value` as a terminal may show it: control and bidirectional formatting characters become
/// `\u{…}` escapes (newline and tab stay when `multiline`).
pub fn escape(value: &str, lines: Lines) -> Cow<'_, str> {
    let keep = |c: char| lines == Lines::Multi && matches!(c, '\n' | '\t');
    if !value.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if is_unsafe(c) && !keep(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text as a terminal may show it: every control character but the whitespace JSON allows
/// between tokens, and every bidirectional formatting character, becomes a `\uXXXX` escape.
/// serde escapes the C0 controls inside strings already, but not DEL, the C1 controls or the
/// bidi characters; all of these are in the Basic Multilingual Plane and can only stand inside a
/// string of valid JSON, where the escape reads back as the same character.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let escaped = |c: char| is_unsafe(c) && !matches!(c, '\n' | '\t' | '\r');
    if !json.chars().any(escaped) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether escaped text keeps its line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A name, a title, a list row: everything is escaped.
    One,
    /// A description or a message: newlines and tabs stay.
    Multi,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn lines_with_controls_or_bidi_are_refused() {
        assert_eq!(check_line("title", "Add a greeting — «bonjour»"), Ok(()));
        for (value, code) in [
            ("a\0b", "0000"),
            ("a\u{1b}[2Jb", "001B"),
            ("bell\u{7}", "0007"),
            ("two\nlines", "000A"),
            ("abc\u{202E}fed", "202E"),
            ("x\u{2066}y", "2066"),
        ] {
            assert_eq!(
                check_line("title", value),
                Err(format!(
                    "title must not contain control or bidirectional formatting characters \
                     (found U+{code})"
                )),
                "{value:?}"
            );
        }
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_its_raw_controls() {
        let value = serde_json::json!({
            "text": "a\u{1b}[2J\u{7}b\u{202E}c\u{7f}d\u{85}e\nf «g»",
            "n": 1
        });
        let json = serde_json::to_string(&value).unwrap();
        let escaped = escape_json(&json);
        assert_eq!(
            escaped,
            r#"{"n":1,"text":"a\u001b[2J\u0007b\u202ec\u007fd\u0085e\nf «g»"}"#
        );
        assert!(!escaped.chars().any(is_unsafe));
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert!(matches!(escape_json("{\n  \"a\": 1\n}"), Cow::Borrowed(_)));
        let back: serde_json::Value = serde_json::from_str(&escape_json(&pretty)).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn escape_leaves_plain_text_and_shows_the_rest() {
        assert_eq!(escape("plain «text»", Lines::One), "plain «text»");
        assert_eq!(
            escape("a\u{1b}[2J\u{7}b\u{202E}c\nd", Lines::One),
            "a\\u{1b}[2J\\u{7}b\\u{202e}c\\u{a}d"
        );
        assert_eq!(escape("a\n\tb\u{0}", Lines::Multi), "a\n\tb\\u{0}");
    }
}
