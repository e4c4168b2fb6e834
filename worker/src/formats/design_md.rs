//! The design sections Kiro's `design.md` and omoi's spec-kit `plan.md` share: components with
//! their interfaces and requirement references, data models, APIs, and the prose sections (error
//! handling, testing strategy, security).

use std::fmt::Write as _;

use omoi_protocol::artifact::{ApiItem, Component, DataModel, DesignOutput};

use super::ids_in;
use super::markdown::{Section, item, labelled, prose, values};

/// Turns references as written (`1.1`, `FR-002`) into requirement ids.
pub(crate) type Refs<'a> = &'a dyn Fn(&[String]) -> Vec<String>;

/// A design document's sections as omoi's design: the overview from the section titled
/// `overview` (Kiro's Overview, spec-kit's Summary), components, data models, APIs and the prose
/// sections.
pub(crate) fn design(root: &Section<'_, '_>, overview_title: &str, refs: Refs<'_>) -> DesignOutput {
    DesignOutput {
        overview: overview(root, overview_title),
        components: components(root.find("components"), refs),
        data_models: data_models(root.find("data model")),
        apis: apis(root.find("apis")),
        error_handling: whole(root, "error handling"),
        testing_strategy: whole(root, "testing strategy"),
        security: whole(root, "security"),
    }
}

/// The whole text of the first section whose title starts with `title`, or empty.
pub(crate) fn whole(root: &Section<'_, '_>, title: &str) -> String {
    root.find(title)
        .map(|s| s.all_lines().join("\n").trim().to_string())
        .unwrap_or_default()
}

/// The references in a section: `Requirements:` lines and `REQ-`/`FR-` ids anywhere else.
fn section_refs(section: &Section<'_, '_>, refs: Refs<'_>) -> Vec<String> {
    let mut found = Vec::new();
    for line in section.all_lines() {
        let line = item(line).map_or(*line, |i| i.text);
        if let Some(v) = labelled(line, "requirements") {
            found.extend(values(v));
        } else {
            found.extend(ids_in(line, "REQ-"));
            found.extend(ids_in(line, "FR-"));
        }
    }
    refs(&found)
}

/// Components: each sub-section of `section`, its prose the responsibility, its list items the
/// interfaces.
pub(crate) fn components(section: Option<Section<'_, '_>>, refs: Refs<'_>) -> Vec<Component> {
    let Some(section) = section else {
        return Vec::new();
    };
    section
        .children()
        .iter()
        .map(|c| {
            let lines: Vec<&str> = c
                .all_lines()
                .iter()
                .filter(|l| labelled(item(l).map_or(l, |i| i.text), "requirements").is_none())
                .copied()
                .collect();
            Component {
                name: c.title().to_string(),
                responsibility: prose(&lines),
                interfaces: lines
                    .iter()
                    .filter_map(|l| item(l))
                    .map(|i| i.text.to_string())
                    .collect(),
                requirements: section_refs(c, refs),
            }
        })
        .collect()
}

/// Data models: each sub-section, its prose the description, its list items the fields.
pub(crate) fn data_models(section: Option<Section<'_, '_>>) -> Vec<DataModel> {
    let Some(section) = section else {
        return Vec::new();
    };
    section
        .children()
        .iter()
        .map(|m| DataModel {
            name: m.title().to_string(),
            description: prose(m.all_lines()),
            fields: m
                .all_lines()
                .iter()
                .filter_map(|l| item(l))
                .map(|i| i.text.to_string())
                .collect(),
        })
        .collect()
}

/// APIs: each sub-section, a first line in backticks the signature, the rest the description.
pub(crate) fn apis(section: Option<Section<'_, '_>>) -> Vec<ApiItem> {
    let Some(section) = section else {
        return Vec::new();
    };
    section
        .children()
        .iter()
        .map(|a| {
            let text = prose(a.all_lines());
            let (first, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
            let (signature, description) = if first.starts_with('`') && first.ends_with('`') {
                (first.trim_matches('`').to_string(), rest.trim().to_string())
            } else {
                (String::new(), text.clone())
            };
            ApiItem {
                name: a.title().to_string(),
                signature,
                description,
            }
        })
        .collect()
}

/// `## <title>` and a `###` section per component.
pub(crate) fn render_components(
    out: &mut String,
    title: &str,
    components: &[Component],
    refs: Refs<'_>,
) {
    let _ = writeln!(out, "\n## {title}");
    for c in components {
        let _ = writeln!(out, "\n### {}\n", c.name);
        if !c.responsibility.trim().is_empty() {
            let _ = writeln!(out, "{}\n", c.responsibility.trim());
        }
        for i in &c.interfaces {
            let _ = writeln!(out, "- {i}");
        }
        if !c.interfaces.is_empty() {
            out.push('\n');
        }
        if !c.requirements.is_empty() {
            let _ = writeln!(out, "_Requirements: {}_", refs(&c.requirements).join(", "));
        }
    }
}

/// `## Data Models` and `## APIs` when there are any, then the prose sections.
pub(crate) fn render_rest(out: &mut String, design: &DesignOutput) {
    if !design.data_models.is_empty() {
        out.push_str("\n## Data Models\n");
        for m in &design.data_models {
            let _ = writeln!(out, "\n### {}\n", m.name);
            if !m.description.trim().is_empty() {
                let _ = writeln!(out, "{}\n", m.description.trim());
            }
            for f in &m.fields {
                let _ = writeln!(out, "- {f}");
            }
        }
    }
    if !design.apis.is_empty() {
        out.push_str("\n## APIs\n");
        for a in &design.apis {
            let _ = writeln!(out, "\n### {}\n", a.name);
            if !a.signature.is_empty() {
                let _ = writeln!(out, "`{}`\n", a.signature);
            }
            if !a.description.trim().is_empty() {
                let _ = writeln!(out, "{}", a.description.trim());
            }
        }
    }
    for (title, text) in [
        ("Error Handling", &design.error_handling),
        ("Testing Strategy", &design.testing_strategy),
        ("Security", &design.security),
    ] {
        let _ = write!(out, "\n## {title}\n\n{}\n", text.trim());
    }
}

/// Sections of a design document that omoi keeps inside the overview, each under its own
/// heading, so a writer that puts the overview under `## Overview` (or `## Summary`) writes them
/// back as sections of their own.
const OVERVIEW_PARTS: [&str; 2] = ["Architecture", "Technical Context"];

/// The overview: the section titled `title`, then each of [`OVERVIEW_PARTS`] present, under its
/// heading.
pub(crate) fn overview(root: &Section<'_, '_>, title: &str) -> String {
    let mut text = whole(root, title);
    for part in OVERVIEW_PARTS {
        let body = whole(root, part);
        if !body.is_empty() {
            text.push_str(&format!("\n\n## {part}\n\n{body}"));
        }
    }
    text
}
