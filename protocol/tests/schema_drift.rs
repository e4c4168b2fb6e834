//! The committed JSON Schemas in `protocol/schema/` match the types.

use std::path::Path;

#[test]
fn committed_schemas_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut drifted = Vec::new();
    for (name, schema) in omoi_protocol::schema::all() {
        let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let have = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if have != want {
            drifted.push(name);
        }
    }
    assert!(
        drifted.is_empty(),
        "protocol/schema/ is out of date for {drifted:?}; run \
         `cargo run -p omoi-protocol --example write_schema` and commit the result"
    );
}

#[test]
fn no_stray_schema_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let known: Vec<&str> = omoi_protocol::schema::all()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(known.contains(&name.as_str()), "stray schema file {name}");
    }
}
