//! The committed fixtures: the sample repository, its feature request and its script.

use std::path::{Path, PathBuf};

/// `tests/fixtures/` of this repository.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The sample repository, `tests/fixtures/sample-repo`.
pub fn sample_repo() -> PathBuf {
    dir().join("sample-repo")
}

/// The script that drives a full spec on the sample repository.
pub fn sample_script() -> PathBuf {
    dir().join("sample-script.json")
}

/// The sample script as JSON, for tests that change it.
pub fn sample_script_json() -> serde_json::Value {
    let text = std::fs::read_to_string(sample_script()).expect("read the sample script");
    serde_json::from_str(&text).expect("the sample script is JSON")
}

/// What the sample script hands in with `submit` for each generated phase (its last submission
/// of the phase's first session), in phase order.
pub fn sample_outputs() -> Vec<(omoi_protocol::phase::Phase, serde_json::Value)> {
    let script = sample_script_json();
    omoi_protocol::phase::Phase::GENERATED
        .into_iter()
        .map(|phase| {
            let turns = script[phase.as_str()][0]
                .as_array()
                .expect("the sample script has a first session per phase");
            let submit = turns
                .iter()
                .flat_map(|turn| turn["tool_calls"].as_array().cloned().unwrap_or_default())
                .rfind(|call| call["name"] == "submit")
                .expect("the sample script submits in every phase");
            (phase, submit["input"].clone())
        })
        .collect()
}

/// The sample feature request: `(title, description)`.
pub fn sample_request() -> (String, String) {
    let text = std::fs::read_to_string(dir().join("sample-request.txt")).expect("read request");
    let (title, description) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
    (title.trim().to_string(), description.trim().to_string())
}

/// Copies the sample repository into `dest` (created) and returns `dest`.
pub fn copy_sample_repo(dest: &Path) -> PathBuf {
    copy_dir(&sample_repo(), dest).expect("copy the sample repository");
    dest.to_path_buf()
}

/// Copies a directory tree, keeping file modes (the scripts stay executable).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Writes `script` as JSON into `dir/name` and returns the path.
pub fn write_script(dir: &Path, name: &str, script: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(script).expect("encode script"),
    )
    .expect("write script");
    path
}
