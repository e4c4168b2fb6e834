//! The task claim at the store: two coordinators (two pools on one database) claiming at the
//! same time from 200 ready tasks take every task exactly once, the limits hold (per project on
//! its own, and for two coordinators claiming at once), a claimed task carries its slice of the
//! final spec, and gets one sandbox.

use omoi_coordinator::model::SandboxStatus;
use omoi_coordinator::model::SpecSlice;
use omoi_coordinator::model::SpecStatus;
use omoi_coordinator::store::{
    ClaimLimits, ClaimedTask, ExecutionClaim, NewSandbox, Store, TaskPolicy, TokenRecord,
};
use omoi_protocol::artifact::SpecTask;
use pretty_assertions::assert_eq;
use serde_json::json;
use sqlx::Connection;

use super::common::tasks::final_spec;
use super::common::{TestDb, each_backend, event, new_project};

const UNLIMITED: ClaimLimits = ClaimLimits {
    total: 100_000,
    per_project: 100_000,
};

/// A store with one project and one spec whose final spec holds `n` independent tasks (all ready).
async fn spec_with_ready_tasks(db: &TestDb, n: usize) -> (Store, String) {
    let store = Store::open(&db.url).await.unwrap();
    let user = store.create_user("ada").await.unwrap();
    let spec_id = add_spec_with_ready_tasks(&store, &user.id, "p", n).await;
    (store, spec_id)
}

/// A store with projects "first" and "second", each with one spec of `n` ready tasks; answers
/// the store and the two specs' ids.
async fn two_projects_with_ready_tasks(db: &TestDb, n: usize) -> (Store, String, String) {
    let store = Store::open(&db.url).await.unwrap();
    let user = store.create_user("ada").await.unwrap();
    let first = add_spec_with_ready_tasks(&store, &user.id, "first", n).await;
    let second = add_spec_with_ready_tasks(&store, &user.id, "second", n).await;
    (store, first, second)
}

/// Adds project `name` with one spec whose final spec holds `n` independent tasks (all ready);
/// answers the spec's id.
async fn add_spec_with_ready_tasks(store: &Store, user_id: &str, name: &str, n: usize) -> String {
    let project = store
        .create_project(user_id, new_project(name))
        .await
        .unwrap();
    let spec = store
        .create_spec(user_id, &project.id, "t", "")
        .await
        .unwrap();
    store
        .claim_execution(
            &spec.id,
            omoi_protocol::phase::Phase::Explore,
            None,
            ExecutionClaim::Start,
        )
        .await
        .unwrap();
    let sandbox_id = format!("spec-sandbox-{name}");
    let sandbox = store
        .create_sandbox(&NewSandbox {
            id: sandbox_id.clone(),
            spec_id: Some(spec.id.clone()),
            task_id: None,
            provider: "local".into(),
            start_phase: None,
            context: None,
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (1..=n)
        .map(|i| {
            json!({"id": format!("TSK-{i:03}"), "title": format!("task {i}"), "description": "d",
                   "type": "implementation", "priority": "medium", "estimate_hours": 1.0,
                   "acceptance_criteria": ["works"], "requirements": ["REQ-CLI-001"]})
        })
        .collect();
    let completed = event(
        &sandbox_id,
        &spec.id,
        1,
        "spec.execution_completed",
        final_spec(Some(json!(tasks))),
    );
    store
        .ingest(
            &sandbox,
            &[completed],
            &TaskPolicy::default(),
            &omoi_coordinator::ingest::Quotas::default(),
        )
        .await
        .unwrap();
    let spec = store.spec_by_id(&spec.id).await.unwrap().unwrap();
    assert_eq!(spec.status, SpecStatus::Implementing);
    spec.id
}

/// Claims one task, if one may run.
async fn claim_one(store: &Store, limits: ClaimLimits) -> Option<ClaimedTask> {
    let mut claimed = store.claim_tasks(limits, 1, "local").await.unwrap();
    assert!(claimed.len() <= 1, "{claimed:?}");
    claimed.pop()
}

/// Claims with `claimers` concurrent loops on `store` until nothing is ready (or `limits` stop
/// it); the claimed ids.
async fn drain(store: Store, claimers: usize, limits: ClaimLimits) -> Vec<String> {
    let loops: Vec<_> = (0..claimers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(task) = claim_one(&store, limits).await {
                    assert_eq!(task.attempts, 1);
                    claimed.push(task.id);
                }
                claimed
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in loops {
        all.extend(handle.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_coordinators_claiming_at_once_take_every_task_exactly_once() {
    each_backend(|db| async move {
        let (first, spec_id) = spec_with_ready_tasks(&db, 200).await;
        // A second coordinator: its own pool on the same database.
        let second = Store::open(&db.url).await.unwrap();
        let (a, b) = tokio::join!(
            drain(first.clone(), 4, UNLIMITED),
            drain(second.clone(), 4, UNLIMITED)
        );
        let mut claimed: Vec<String> = a.iter().chain(&b).cloned().collect();
        claimed.sort();
        let mut expected: Vec<String> = first
            .tasks_of_spec(&spec_id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        expected.sort();
        assert_eq!(claimed.len(), 200);
        assert_eq!(claimed, expected, "every task claimed exactly once");
        let attempts: Vec<u32> = first
            .tasks_of_spec(&spec_id)
            .await
            .unwrap()
            .iter()
            .map(|t| t.attempts)
            .collect();
        assert_eq!(attempts, vec![1; 200]);
        second.close().await;
        first.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_coordinators_claiming_at_once_never_pass_the_limits_together() {
    each_backend(|db| async move {
        let (first, spec_id) = spec_with_ready_tasks(&db, 60).await;
        let second = Store::open(&db.url).await.unwrap();
        let limits = ClaimLimits {
            total: 7,
            per_project: 100,
        };
        let (a, b) = tokio::join!(
            drain(first.clone(), 4, limits),
            drain(second.clone(), 4, limits)
        );
        assert_eq!(a.len() + b.len(), 7);
        let running = first
            .tasks_of_spec(&spec_id)
            .await
            .unwrap()
            .iter()
            .filter(|t| t.attempts == 1)
            .count();
        assert_eq!(running, 7);
        second.close().await;
        first.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_claim_respects_the_total_and_the_per_project_limit() {
    each_backend(|db| async move {
        let (store, _) = spec_with_ready_tasks(&db, 5).await;
        let per_project = ClaimLimits {
            total: 10,
            per_project: 2,
        };
        let mut claimed = Vec::new();
        while let Some(task) = claim_one(&store, per_project).await {
            claimed.push(task.task.id);
        }
        assert_eq!(claimed, ["TSK-001", "TSK-002"]);
        let total = ClaimLimits {
            total: 3,
            per_project: 10,
        };
        let mut more = Vec::new();
        while let Some(task) = claim_one(&store, total).await {
            more.push(task.task.id);
        }
        assert_eq!(more, ["TSK-003"]);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_per_project_limit_counts_each_project_on_its_own() {
    each_backend(|db| async move {
        let (store, first, second) = two_projects_with_ready_tasks(&db, 3).await;
        let limits = ClaimLimits {
            total: 10,
            per_project: 2,
        };
        let mut claimed = Vec::new();
        while let Some(task) = claim_one(&store, limits).await {
            let project = if task.spec_id == first {
                "first"
            } else {
                "second"
            };
            assert!(task.spec_id == first || task.spec_id == second);
            claimed.push((project, task.task.id));
        }
        claimed.sort();
        let pairs: Vec<(&str, &str)> = claimed.iter().map(|(p, t)| (*p, t.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("first", "TSK-001"),
                ("first", "TSK-002"),
                ("second", "TSK-001"),
                ("second", "TSK-002"),
            ]
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_claimed_task_carries_its_slice_of_the_final_spec_even_if_bridged_without_one() {
    each_backend(|db| async move {
        let (store, spec_id) = spec_with_ready_tasks(&db, 2).await;
        let final_spec = store.final_spec(&spec_id).await.unwrap().unwrap();
        let expected = |task: &SpecTask| SpecSlice::of(&final_spec, task);

        let claimed = claim_one(&store, UNLIMITED).await.unwrap();
        assert_eq!(claimed.slice, Some(expected(&claimed.task)));
        assert!(!expected(&claimed.task).requirements.is_empty());
        assert_eq!(
            store.spec_slice(&claimed).await.unwrap(),
            expected(&claimed.task)
        );

        // A task bridged before slices were stored gets its slice cut from the final spec.
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE tasks SET spec_slice = NULL")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let old = claim_one(&store, UNLIMITED).await.unwrap();
        assert_eq!(old.slice, None);
        assert_eq!(store.spec_slice(&old).await.unwrap(), expected(&old.task));
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_claimed_task_comes_with_its_sandbox_and_token_recorded() {
    each_backend(|db| async move {
        let (store, spec_id) = spec_with_ready_tasks(&db, 1).await;
        let claimed = claim_one(&store, UNLIMITED).await.unwrap();
        assert_eq!(claimed.sandbox.spec_id.as_deref(), Some(spec_id.as_str()));
        assert_eq!(
            claimed.sandbox.task_id.as_deref(),
            Some(claimed.id.as_str())
        );
        assert_eq!(claimed.sandbox.status, SandboxStatus::Starting);
        assert_eq!(claimed.sandbox.provider, "local");
        assert_eq!(
            store.sandbox(&claimed.sandbox.id).await.unwrap(),
            Some(claimed.sandbox.clone())
        );
        assert_eq!(
            store.token(&claimed.token).await.unwrap(),
            Some(TokenRecord::Sandbox {
                sandbox_id: claimed.sandbox.id.clone()
            })
        );
        let task = store.task_by_id(&claimed.id).await.unwrap().unwrap();
        assert_eq!(
            task.sandbox_id.as_deref(),
            Some(claimed.sandbox.id.as_str())
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn one_claim_takes_several_tasks_within_the_limits_each_with_its_own_sandbox() {
    each_backend(|db| async move {
        let (store, first, second) = two_projects_with_ready_tasks(&db, 4).await;
        let limits = ClaimLimits {
            total: 5,
            per_project: 3,
        };
        let claimed = store.claim_tasks(limits, 10, "local").await.unwrap();
        let taken: Vec<(bool, &str)> = claimed
            .iter()
            .map(|t| (t.spec_id == first, t.task.id.as_str()))
            .collect();
        assert_eq!(
            taken,
            [
                (true, "TSK-001"),
                (true, "TSK-002"),
                (true, "TSK-003"),
                (false, "TSK-001"),
                (false, "TSK-002"),
            ]
        );
        assert!(
            claimed
                .iter()
                .all(|t| t.spec_id == first || t.spec_id == second)
        );
        let mut sandboxes: Vec<&str> = claimed.iter().map(|t| t.sandbox.id.as_str()).collect();
        sandboxes.sort_unstable();
        sandboxes.dedup();
        assert_eq!(sandboxes.len(), 5);
        for task in &claimed {
            let record = store.task_by_id(&task.id).await.unwrap().unwrap();
            assert_eq!(record.sandbox_id.as_deref(), Some(task.sandbox.id.as_str()));
        }
        // The total limit is reached: nothing more, and nothing recorded for it.
        assert_eq!(store.claim_tasks(limits, 10, "local").await.unwrap(), []);
        store.close().await;
    })
    .await;
}
