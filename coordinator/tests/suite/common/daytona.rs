//! Support of the daytona suite: the fake Daytona (`omoi_tests::fake_daytona`) whose snapshot
//! holds the real `omoi-worker`, and a provider connected to it; the git remote the sandboxes
//! clone from and the launched spec come from [`super::remote`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use omoi_coordinator::sandbox::SandboxError;
use omoi_coordinator::sandbox::daytona::{DaytonaConfig, DaytonaProvider};
use omoi_tests::fake_daytona::{FakeDaytona, FakeDaytonaConfig, FakeSnapshot};

pub use super::remote::launch;

/// The key the fake takes.
pub const KEY: &str = "dtn_fake_key_0123456789abcdef";
/// The key's organisation.
pub const ORG: &str = "org-omoi-tests";
/// The snapshot with the worker.
pub const SNAPSHOT: &str = "omoi-worker";

/// A fake whose snapshot `omoi-worker` holds this build's worker, and `omoi-pending` is not
/// active yet.
pub async fn fake(dir: &Path) -> FakeDaytona {
    FakeDaytona::start(FakeDaytonaConfig {
        key: KEY.to_string(),
        organization: ORG.to_string(),
        snapshots: BTreeMap::from([
            (
                SNAPSHOT.to_string(),
                FakeSnapshot {
                    state: "active".into(),
                    worker: Some(crate::suite::worker_e2e::worker_bin()),
                },
            ),
            (
                "omoi-pending".to_string(),
                FakeSnapshot {
                    state: "pending".into(),
                    worker: None,
                },
            ),
        ]),
        work_dir: dir.join("daytona"),
        start_delay: Duration::from_millis(20),
    })
    .await
}

/// The provider's settings for the fake: a fast poll and retries.
pub fn config(fake: &FakeDaytona, data: &Path) -> DaytonaConfig {
    let mut config = DaytonaConfig::new(
        fake.api_url().parse().unwrap(),
        KEY.to_string(),
        SNAPSHOT.to_string(),
        data.to_path_buf(),
    );
    config.connection.organization_id = Some(ORG.to_string());
    config.connection.retry_base = Duration::from_millis(20);
    config.poll_interval = Duration::from_millis(200);
    config.spawn_deadline = Duration::from_secs(30);
    config
}

/// The provider on the fake with `tune` applied to its settings.
pub async fn provider(
    fake: &FakeDaytona,
    data: &Path,
    tune: impl FnOnce(&mut DaytonaConfig),
) -> Result<DaytonaProvider, SandboxError> {
    let mut config = config(fake, data);
    tune(&mut config);
    DaytonaProvider::start(config).await
}
