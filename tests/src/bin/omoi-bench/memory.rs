//! Coordinator memory: the resident set of an `omoi serve` process (SQLite) from `/proc`, idle,
//! after 1,000 specs were created through the API, and after the list of them was read.

use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use crate::server::{Coordinator, omoi_binary};
use crate::stand_in;
use crate::{Result, figure, flag};

/// `omoi-bench memory [--omoi PATH] [--specs 1000] [--runs 3]`.
pub fn run(args: &[String]) -> Result<()> {
    let omoi = omoi_binary(flag(args, "--omoi"))?;
    let specs: usize = flag(args, "--specs").unwrap_or("1000").parse()?;
    let runs: usize = flag(args, "--runs").unwrap_or("3").parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (mut idle, mut created, mut listed, mut peak) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let scratch = tempfile::tempdir()?;
            let options = stand_in::serve_options(scratch.path(), omoi.clone(), None)?;
            let coordinator = Coordinator::start(&options).await?;
            let api = coordinator.api()?;
            let repo = scratch.path().join("repo");
            std::fs::create_dir_all(&repo)?;
            let project = api
                .create_project(&repo.display().to_string(), json!({}))
                .await?;
            // Let the start-up settle (the first monitor pass, lazy allocations).
            tokio::time::sleep(Duration::from_millis(300)).await;
            idle.push(mib(coordinator.rss_kib()?));
            let description = "As a user I want the greeting to be shouted, so that it stands out. \
                               The option is --shout; without it nothing changes.";
            stream::iter(0..specs)
                .map(|i| {
                    let api = api.clone();
                    let project = project.clone();
                    async move {
                        api.create_spec(&project, &format!("Spec number {i}"), description)
                            .await
                    }
                })
                .buffer_unordered(8)
                .try_collect::<Vec<_>>()
                .await?;
            created.push(mib(coordinator.rss_kib()?));
            let list = api.get("/specs").await?;
            let count = list.as_array().map_or(0, Vec::len);
            if count != specs {
                return Err(format!("GET /specs listed {count} specs, not {specs}").into());
            }
            listed.push(mib(coordinator.rss_kib()?));
            peak.push(mib(coordinator.peak_rss_kib()?));
            coordinator.stop().await?;
        }
        figure("coordinator RSS idle (SQLite)", idle, "MiB", f64::NAN);
        figure(
            &format!("coordinator RSS after creating {specs} specs"),
            created,
            "MiB",
            100.0,
        );
        figure(
            &format!("coordinator RSS after listing {specs} specs"),
            listed,
            "MiB",
            100.0,
        );
        figure("coordinator peak RSS over all of that", peak, "MiB", 100.0);
        Ok(())
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
