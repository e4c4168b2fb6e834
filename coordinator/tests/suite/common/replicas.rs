//! Several coordinators on one database: the PostgreSQL database the replica suites need, and
//! replicas started over it with a name of their own.

use std::sync::Arc;

use omoi_coordinator::Settings;
use omoi_coordinator::sandbox::Provider;

use super::{TestDb, TestServer, postgres};

/// A fresh PostgreSQL database, or `None` (the test does nothing) when
/// `OMOI_TEST_POSTGRES_URL` is unset; with `CI=true` a missing PostgreSQL fails the test.
pub async fn postgres_db() -> Option<TestDb> {
    match std::env::var("OMOI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(postgres(&url).await),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but OMOI_TEST_POSTGRES_URL is unset: the replica suites need it")
        }
        _ => None,
    }
}

/// A coordinator named `name` over `db`; `tune` adjusts its settings further.
pub async fn replica(
    db: &TestDb,
    provider: Arc<dyn Provider>,
    name: &str,
    tune: impl FnOnce(&mut Settings),
) -> TestServer {
    TestServer::start(db, provider, |s| {
        s.replica_id = name.to_string();
        tune(s);
    })
    .await
}
