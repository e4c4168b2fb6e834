//! Just enough markdown for spec documents: headings and the lines under them, list items with
//! their nesting, bold labels and the `_Label: …_` lines that Kiro and spec-kit write. Fenced code
//! blocks are content: a heading inside one is not a heading.

/// A markdown document as headings over lines.
#[derive(Debug)]
pub(crate) struct Doc<'a> {
    lines: Vec<&'a str>,
    headings: Vec<Heading<'a>>,
}

/// A heading: its level (number of `#`), its text, and its line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heading<'a> {
    pub(crate) level: usize,
    pub(crate) title: &'a str,
    line: usize,
}

/// A section: a heading (or the document's start) and the lines up to the next heading of the same
/// or a higher level.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section<'d, 'a> {
    doc: &'d Doc<'a>,
    /// The heading's index, or `None` for the whole document.
    heading: Option<usize>,
}

impl<'a> Doc<'a> {
    pub(crate) fn parse(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut headings = Vec::new();
        let mut fenced = false;
        for (line, raw) in lines.iter().enumerate() {
            let trimmed = raw.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fenced = !fenced;
                continue;
            }
            if fenced || !raw.starts_with('#') {
                continue;
            }
            let level = raw.bytes().take_while(|&b| b == b'#').count();
            let rest = &raw[level..];
            if level <= 6 && (rest.is_empty() || rest.starts_with(' ')) {
                headings.push(Heading {
                    level,
                    title: rest.trim().trim_end_matches('#').trim(),
                    line,
                });
            }
        }
        Doc { lines, headings }
    }

    /// The lines (0-based, in order) that are headings.
    pub(crate) fn heading_lines(&self) -> Vec<usize> {
        self.headings.iter().map(|h| h.line).collect()
    }

    /// Every section of the document, in order.
    pub(crate) fn sections(&self) -> Vec<Section<'_, 'a>> {
        (0..self.headings.len())
            .map(|h| Section {
                doc: self,
                heading: Some(h),
            })
            .collect()
    }

    pub(crate) fn root(&self) -> Section<'_, 'a> {
        Section {
            doc: self,
            heading: None,
        }
    }
}

impl<'d, 'a> Section<'d, 'a> {
    pub(crate) fn title(&self) -> &'a str {
        self.heading
            .map(|h| self.doc.headings[h].title)
            .unwrap_or_default()
    }

    fn level(&self) -> usize {
        self.heading.map_or(0, |h| self.doc.headings[h].level)
    }

    /// The index of the first heading after this section's own, and of the first beyond its end.
    fn heading_range(&self) -> (usize, usize) {
        let first = self.heading.map_or(0, |h| h + 1);
        let level = self.level();
        let end = (first..self.doc.headings.len())
            .find(|&h| self.doc.headings[h].level <= level)
            .unwrap_or(self.doc.headings.len());
        (first, end)
    }

    /// The sections directly inside this one (the shallowest headings within it).
    pub(crate) fn children(&self) -> Vec<Section<'d, 'a>> {
        let (first, end) = self.heading_range();
        let Some(shallowest) = (first..end).map(|h| self.doc.headings[h].level).min() else {
            return Vec::new();
        };
        (first..end)
            .filter(|&h| self.doc.headings[h].level == shallowest)
            .map(|h| Section {
                doc: self.doc,
                heading: Some(h),
            })
            .collect()
    }

    /// The first section inside this one, at any depth, whose title starts with `prefix`
    /// (case-insensitive, ignoring a trailing `*(mandatory)*` and the like).
    pub(crate) fn find(&self, prefix: &str) -> Option<Section<'d, 'a>> {
        let (first, end) = self.heading_range();
        let prefix = prefix.to_lowercase();
        (first..end)
            .find(|&h| {
                self.doc.headings[h]
                    .title
                    .to_lowercase()
                    .starts_with(&prefix)
            })
            .map(|h| Section {
                doc: self.doc,
                heading: Some(h),
            })
    }

    /// The lines between the heading and the first heading inside the section.
    pub(crate) fn own_lines(&self) -> &'d [&'a str] {
        let start = self.heading.map_or(0, |h| self.doc.headings[h].line + 1);
        let (first, _) = self.heading_range();
        let end = self
            .doc
            .headings
            .get(first)
            .map_or(self.doc.lines.len(), |h| h.line);
        let end = self.end_line().min(end).max(start);
        &self.doc.lines[start..end]
    }

    /// Every line of the section below its heading, sub-sections included.
    pub(crate) fn all_lines(&self) -> &'d [&'a str] {
        let start = self.heading.map_or(0, |h| self.doc.headings[h].line + 1);
        &self.doc.lines[start..self.end_line().max(start)]
    }

    fn end_line(&self) -> usize {
        let (_, end) = self.heading_range();
        self.doc
            .headings
            .get(end)
            .map_or(self.doc.lines.len(), |h| h.line)
    }
}

/// A list item: its indentation, whether it is a checkbox (and checked), and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item<'a> {
    pub(crate) indent: usize,
    pub(crate) checkbox: Option<bool>,
    pub(crate) text: &'a str,
}

/// The list item on `line`, if it is one (`-`, `*`, `+` or `1.` markers).
pub(crate) fn item(line: &str) -> Option<Item<'_>> {
    let indent = line.len() - line.trim_start().len();
    let rest = line.trim_start();
    let rest = if let Some(r) = rest
        .strip_prefix("- ")
        .or_else(|| rest.strip_prefix("* "))
        .or_else(|| rest.strip_prefix("+ "))
    {
        r
    } else {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest[digits..]
            .strip_prefix(". ")
            .or_else(|| rest[digits..].strip_prefix(") "))?
    };
    let (checkbox, text) = if let Some(t) = rest.strip_prefix("[ ] ") {
        (Some(false), t)
    } else if let Some(t) = rest
        .strip_prefix("[x] ")
        .or_else(|| rest.strip_prefix("[X] "))
    {
        (Some(true), t)
    } else {
        (None, rest)
    };
    Some(Item {
        indent,
        checkbox,
        text: text.trim(),
    })
}

/// `text` without a `**Label**:` / `**Label:**` / `_Label: …_` / `Label:` prefix named `label`
/// (case-insensitive), or `None` when it does not start with that label.
pub(crate) fn labelled<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let t = text.trim();
    let t = t.trim_start_matches(['*', '_']);
    let head = t.get(..label.len())?;
    if !head.eq_ignore_ascii_case(label) {
        return None;
    }
    let rest = t[label.len()..].trim_start_matches(['*', '_']);
    let rest = rest.strip_prefix(':')?;
    Some(
        rest.trim_start_matches(['*', '_'])
            .trim()
            .trim_end_matches(['*', '_'])
            .trim(),
    )
}

/// The comma-separated values of a list like `1.1, 2.3` or `T001, T002` (`and` also separates).
pub(crate) fn values(text: &str) -> Vec<String> {
    text.replace(" and ", ",")
        .split([',', ';'])
        .map(|v| {
            v.trim()
                .trim_matches(['`', '.', '*', '_'])
                .trim()
                .to_string()
        })
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("none"))
        .collect()
}

/// Paragraph text of `lines` that are not list items, joined with newlines and trimmed.
pub(crate) fn prose(lines: &[&str]) -> String {
    lines
        .iter()
        .filter(|l| item(l).is_none())
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn sections_nest_by_level_and_ignore_fenced_code() {
        let doc = Doc::parse(
            "# Title\nintro\n## A\na text\n```\n# not a heading\n```\n### A1\nx\n## B\nb\n",
        );
        let root = doc.root();
        let title = root.children();
        assert_eq!(title.len(), 1);
        let parts: Vec<&str> = title[0].children().iter().map(|s| s.title()).collect();
        assert_eq!(parts, vec!["A", "B"]);
        let a = root.find("a").unwrap();
        assert_eq!(a.own_lines(), ["a text", "```", "# not a heading", "```"]);
        assert_eq!(a.all_lines().len(), 6);
        assert_eq!(root.find("a1").unwrap().own_lines(), ["x"]);
        assert!(root.find("c").is_none());
    }

    #[test]
    fn items_labels_and_values() {
        assert_eq!(
            item("  - [ ] 2.1 Create the model"),
            Some(Item {
                indent: 2,
                checkbox: Some(false),
                text: "2.1 Create the model"
            })
        );
        assert_eq!(
            item("1. WHEN x THEN y"),
            Some(Item {
                indent: 0,
                checkbox: None,
                text: "WHEN x THEN y"
            })
        );
        assert_eq!(item("plain text"), None);
        assert_eq!(item("12"), None);
        assert_eq!(
            labelled("_Requirements: 1.1, 2.3_", "requirements"),
            Some("1.1, 2.3")
        );
        assert_eq!(
            labelled("**User Story:** As a user", "user story"),
            Some("As a user")
        );
        assert_eq!(labelled("**Priority**: high", "priority"), Some("high"));
        assert_eq!(labelled("Priorities: x", "priority"), None);
        assert_eq!(values("1.1, 2.3 and 4"), vec!["1.1", "2.3", "4"]);
        assert_eq!(values("none"), Vec::<String>::new());
    }
}
