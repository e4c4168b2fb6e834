//! The layer invariant, checked: every module of `src/` belongs to one layer, and a module names
//! only modules of its own layer or below (ARCHITECTURE.md, "Coordinator layers").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer, from the ground up.
const LAYERS: [(&str, u8); 31] = [
    ("error", 0),
    ("repo", 0),
    ("secret", 0),
    ("text", 0),
    ("model", 0),
    ("ingest", 0),
    ("hub", 0),
    ("metrics", 0),
    ("github", 0),
    ("token", 0),
    ("throttle", 0),
    ("wake", 0),
    ("store", 1),
    ("sandbox", 1),
    ("app", 2),
    ("execution", 3),
    ("scheduler", 3),
    ("liveness", 3),
    ("pull_request", 3),
    ("task_context", 3),
    ("launch", 3),
    ("pool", 3),
    ("presence", 3),
    ("relay", 3),
    ("review", 3),
    ("api", 4),
    ("dashboard", 4),
    ("server", 5),
    ("cli", 6),
    // Test-only, like `lib.rs` and `main.rs` it sits above everything.
    ("layers", 7),
    ("main", 7),
];

/// What `lib.rs` re-exports at the crate root, and the module each comes from.
const ROOT_EXPORTS: [(&str, &str); 6] = [
    ("Error", "error"),
    ("Result", "error"),
    ("AppState", "app"),
    ("Settings", "app"),
    ("router", "server"),
    ("serve", "server"),
];

/// What the coordinator may use of the worker's library: its pure evaluators (the review API
/// judges an edited phase output with them) and the default limits; never an agent, a provider
/// or the runtime.
const WORKER_PATHS: [&str; 2] = ["omoi_worker::evaluate::", "omoi_worker::config::Limits"];

/// Plug-in and storage modules that must not know the application state.
const NO_APP_STATE: [&str; 2] = ["store", "sandbox"];

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
}

/// The source without comments (line comments and doc comments; the code has no block comments).
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a source names through `crate::…`, `crate::{…}` included.
fn named_modules(source: &str) -> BTreeSet<String> {
    let code = code_of(source);
    let mut named = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                named.insert(item);
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                named.insert(ident);
            }
        }
    }
    named
}

/// The first identifier of each top-level item of a `{…}` group (the text after its `{`).
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    let mut taking = true;
    for c in group.chars() {
        match c {
            '{' => {
                depth += 1;
                taking = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !current.is_empty() {
                    items.push(std::mem::take(&mut current));
                }
                taking = true;
            }
            c if depth == 0 && taking && (c.is_alphanumeric() || c == '_') => current.push(c),
            c if depth == 0 && taking && !c.is_whitespace() => taking = false,
            _ => {}
        }
    }
    if !current.is_empty() {
        items.push(current);
    }
    items
}

/// The top-level module a file under `src/` belongs to (`store/tasks.rs` → `store`).
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// What breaks the layering in one file, one line per fault.
fn violations(module: &str, source: &str) -> Vec<String> {
    let mut faults = Vec::new();
    let Some(own) = layer(module) else {
        return vec![format!("{module} is in no layer: add it to LAYERS")];
    };
    for named in named_modules(source) {
        let named = ROOT_EXPORTS
            .iter()
            .find(|(export, _)| *export == named)
            .map_or(named.as_str(), |(_, module)| *module);
        match layer(named) {
            Some(other) if other > own => faults.push(format!(
                "{module} (layer {own}) names crate::{named} (layer {other})"
            )),
            Some(_) => {}
            None => faults.push(format!(
                "{module} names crate::{named}, which is in no layer"
            )),
        }
    }
    if NO_APP_STATE.contains(&module) && code_of(source).contains("AppState") {
        faults.push(format!("{module} names AppState"));
    }
    let code = code_of(source);
    for (at, _) in code.match_indices("omoi_worker") {
        let path = &code[at..];
        if !WORKER_PATHS.iter().any(|allowed| path.starts_with(allowed)) {
            let shown: String = path
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            faults.push(format!(
                "{module} names {shown}, not a pure part of the worker"
            ));
        }
    }
    faults
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

#[test]
fn every_module_names_only_its_own_layer_or_below_and_no_two_name_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files).unwrap();
    let mut faults = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        // `lib.rs` declares every module; this file names modules in its own test data.
        if relative == Path::new("lib.rs") || relative == Path::new("layers.rs") {
            continue;
        }
        let module = module_of(relative).unwrap();
        let source = std::fs::read_to_string(&file).unwrap();
        faults.extend(
            violations(&module, &source)
                .into_iter()
                .map(|f| format!("{}: {f}", relative.display())),
        );
        let named = named_modules(&source);
        edges
            .entry(module.clone())
            .or_default()
            .extend(named.into_iter().filter(|n| *n != module));
    }
    for (module, named) in &edges {
        for other in named {
            if module < other && edges.get(other).is_some_and(|back| back.contains(module)) {
                faults.push(format!("{module} and {other} name each other"));
            }
        }
    }
    assert_eq!(faults, Vec::<String>::new());
}

#[test]
fn the_check_finds_an_upward_import_a_stray_app_state_and_an_unknown_module() {
    let source = "use crate::error::Result;\n\
                  // crate::cli in a comment does not count\n\
                  use crate::{model::Spec, app::{AppState, Settings}};\n\
                  fn f(_: crate::server::Router) {}\n\
                  use crate::nowhere::Thing;\n\
                  use omoi_worker::evaluate::feedback;\n\
                  use omoi_worker::agent::Agent;\n";
    assert_eq!(
        violations("store", source),
        vec![
            "store (layer 1) names crate::app (layer 2)".to_string(),
            "store names crate::nowhere, which is in no layer".to_string(),
            "store (layer 1) names crate::server (layer 5)".to_string(),
            "store names AppState".to_string(),
            "store names omoi_worker::agent::Agent, not a pure part of the worker".to_string(),
        ]
    );
    assert_eq!(
        violations("cli", source),
        vec![
            "cli names crate::nowhere, which is in no layer".to_string(),
            "cli names omoi_worker::agent::Agent, not a pure part of the worker".to_string(),
        ]
    );
    assert_eq!(
        violations("gadget", ""),
        vec!["gadget is in no layer: add it to LAYERS".to_string()]
    );
}
