//! Regenerates `protocol/schema/`: `cargo run -p omoi-protocol --example write_schema`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    std::fs::create_dir_all(&dir)?;
    for (name, schema) in omoi_protocol::schema::all() {
        let text = serde_json::to_string_pretty(&schema).map_err(std::io::Error::other)? + "\n";
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}
