//! `omoi-worker`: placeholder
fn main() {}
