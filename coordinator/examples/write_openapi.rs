//! Regenerates `coordinator/openapi.json`: `cargo run -p omoi-coordinator --example write_openapi`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let document = omoi_coordinator::api::openapi::document();
    let text = serde_json::to_string_pretty(&document).map_err(std::io::Error::other)? + "\n";
    std::fs::write(path, text)
}
