//! The worker's layers point one way (ARCHITECTURE.md): `error` and `process` name nothing of the
//! agents, providers or modes, and the modes reach agents only through the `Agent` seam.

use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;

/// Every `.rs` file under `dir` (or `dir` itself when it is a file), unit tests excluded.
fn sources(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs")
            && path.file_name().is_some_and(|name| name != "tests.rs")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `file: path` for each path of `forbidden` that a file of `modules` names.
fn violations(modules: &[&str], forbidden: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for module in modules {
        for file in sources(&src.join(module)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for path in forbidden {
                if text.contains(path) {
                    let name = file.strip_prefix(&src).unwrap().display();
                    found.push(format!("{name}: {path}"));
                }
            }
        }
    }
    found
}

#[test]
fn the_ground_names_no_agent_provider_or_mode() {
    let above = [
        "crate::agent",
        "crate::llm",
        "crate::machine",
        "crate::task",
        "crate::skill",
        "crate::run",
        "crate::config",
    ];
    assert_eq!(
        violations(&["error.rs", "process.rs", "evaluate", "formats"], &above),
        Vec::<String>::new()
    );
}

#[test]
fn the_modes_reach_agents_only_through_the_seam() {
    let native = [
        "crate::llm",
        "crate::agent::native",
        "crate::agent::tools",
        "NativeAgent",
        "ToolBox",
    ];
    assert_eq!(
        violations(&["machine.rs", "task", "skill.rs"], &native),
        Vec::<String>::new()
    );
}
