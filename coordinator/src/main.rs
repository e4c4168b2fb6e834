//! `omoi`: the coordinator server and its client CLI.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("the coordinator is not built yet; run `omoi-worker` directly")
}
