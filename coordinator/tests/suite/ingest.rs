//! Event ingest: acks, duplicates, reordered retries, unknown types, validation, spec state.

use omoi_coordinator::model::StreamEvent;
use omoi_protocol::event::RawEvent;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::common::{Api, Scenario, each_backend, error, event, phase_completed};

async fn history(api: &Api, spec_id: &str) -> Vec<RawEvent> {
    let (status, page) = api
        .get(&format!("/specs/{spec_id}/events?limit=1000"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<StreamEvent> = serde_json::from_value(page["events"].clone()).unwrap();
    events.into_iter().map(|e| e.event).collect()
}

fn message(sandbox: &str, spec: &str, seq: u64) -> RawEvent {
    event(
        sandbox,
        spec,
        seq,
        "agent.message",
        json!({"text": format!("m{seq}")}),
    )
}

#[tokio::test]
async fn duplicates_are_ignored_and_the_ack_is_the_highest_contiguous_seq() {
    each_backend(|db| async move {
        let Scenario {
            server,
            api,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let first: Vec<_> = (1..=3).map(|s| message(&sandbox, &spec, s)).collect();
        assert_eq!(
            sb.ingest(&sandbox, &first).await,
            (StatusCode::OK, json!({"acked_seq": 3}))
        );
        // The same batch again (its ack was lost), then one overlapping the next.
        assert_eq!(
            sb.ingest(&sandbox, &first).await,
            (StatusCode::OK, json!({"acked_seq": 3}))
        );
        let overlap: Vec<_> = (3..=5).map(|s| message(&sandbox, &spec, s)).collect();
        assert_eq!(
            sb.ingest(&sandbox, &overlap).await,
            (StatusCode::OK, json!({"acked_seq": 5}))
        );
        let expected: Vec<_> = (1..=5).map(|s| message(&sandbox, &spec, s)).collect();
        assert_eq!(history(&api, &spec).await, expected);
        assert_eq!(
            server.store.sandbox_events(&sandbox).await.unwrap(),
            expected
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reordered_batches_are_stored_and_released_in_seq_order() {
    each_backend(|db| async move {
        let Scenario {
            server,
            api,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let later: Vec<_> = [4, 3].map(|s| message(&sandbox, &spec, s)).to_vec();
        assert_eq!(
            sb.ingest(&sandbox, &later).await,
            (StatusCode::OK, json!({"acked_seq": 0}))
        );
        assert_eq!(history(&api, &spec).await, vec![]);
        assert_eq!(
            sb.ingest(&sandbox, &[message(&sandbox, &spec, 2)]).await,
            (StatusCode::OK, json!({"acked_seq": 0}))
        );
        assert_eq!(
            sb.ingest(&sandbox, &[message(&sandbox, &spec, 1)]).await,
            (StatusCode::OK, json!({"acked_seq": 4}))
        );
        let expected: Vec<_> = (1..=4).map(|s| message(&sandbox, &spec, s)).collect();
        assert_eq!(history(&api, &spec).await, expected);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_event_types_are_stored_as_they_are() {
    each_backend(|db| async move {
        let Scenario {
            server,
            api,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let odd = event(
            &sandbox,
            &spec,
            1,
            "agent.dreamed",
            json!({"of": ["sheep", 1]}),
        );
        // A known type whose data does not fit is kept too.
        let misfit = event(
            &sandbox,
            &spec,
            2,
            "spec.phase_started",
            json!({"phase": 42}),
        );
        assert_eq!(
            sb.ingest(&sandbox, &[odd.clone(), misfit.clone()]).await,
            (StatusCode::OK, json!({"acked_seq": 2}))
        );
        assert_eq!(history(&api, &spec).await, vec![odd, misfit]);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn batches_that_do_not_belong_to_the_sandbox_are_refused() {
    each_backend(|db| async move {
        let Scenario {
            server,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let cases = [
            (
                event("other", &spec, 1, "agent.message", json!({"text": "x"})),
                format!("event seq 1 names sandbox \"other\", not \"{sandbox}\""),
            ),
            (
                event(
                    &sandbox,
                    "other-spec",
                    1,
                    "agent.message",
                    json!({"text": "x"}),
                ),
                "event seq 1 names spec \"other-spec\", which this sandbox does not run".into(),
            ),
            (
                message(&sandbox, &spec, 0),
                "event seq starts at 1, got 0".into(),
            ),
        ];
        for (bad, reason) in cases {
            assert_eq!(
                sb.ingest(&sandbox, &[bad]).await,
                (StatusCode::UNPROCESSABLE_ENTITY, error("invalid", &reason))
            );
        }
        let (status, body) = sb
            .post(
                &format!("/sandboxes/{sandbox}/events"),
                &json!({"events": [{"seq": 1}]}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid"))
        );
        assert_eq!(
            sb.post_raw(&format!("/sandboxes/{sandbox}/events"), "{\"events\": [")
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ingest_keeps_phases_checkpoints_and_the_final_spec_current() {
    each_backend(|db| async move {
        let Scenario {
            server,
            api,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let mut seq = 0;
        let mut next = |kind: &str, data: Value| {
            seq += 1;
            event(&sandbox, &spec, seq, kind, data)
        };
        let eval = |phase: &str, attempt: u32, score: f64, passed: bool| {
            json!({"attempt": attempt, "phase": phase, "score": score, "passed": passed,
                   "criteria": [], "issues": [], "warnings": []})
        };
        let batch = vec![
            next(
                "agent.started",
                json!({"version": "0.1.0", "mode": "spec", "start_phase": "explore"}),
            ),
            next(
                "spec.execution_started",
                json!({"title": "Add --shout", "phases": ["explore", "requirements"]}),
            ),
            next(
                "spec.phase_started",
                json!({"phase": "explore", "attempt": 1}),
            ),
            next("spec.eval_result", eval("explore", 1, 0.5, false)),
            next(
                "spec.phase_retry",
                json!({"phase": "explore", "attempt": 2, "reason": "low", "feedback": "more"}),
            ),
            next(
                "spec.phase_started",
                json!({"phase": "explore", "attempt": 2}),
            ),
            next("spec.eval_result", eval("explore", 2, 0.92, true)),
            next("spec.phase_completed", phase_completed("explore", 0.92, 2)),
            next(
                "spec.phase_started",
                json!({"phase": "requirements", "attempt": 1}),
            ),
            next("spec.eval_result", eval("requirements", 1, 0.4, false)),
        ];
        assert_eq!(
            sb.ingest(&sandbox, &batch).await,
            (StatusCode::OK, json!({"acked_seq": 10}))
        );
        let (_, detail) = api.get(&format!("/specs/{spec}")).await;
        assert_eq!(detail["status"], "executing");
        assert_eq!(detail["current_phase"], "requirements");
        assert_eq!(detail["sandboxes"][0]["status"], "running");
        assert_eq!(detail["sandboxes"][0]["acked_seq"], 10);
        assert_eq!(
            detail["phases"],
            json!([
                {"phase": "explore", "status": "completed", "attempts": 2, "score": 0.92,
                 "duration_ms": 1200, "output": super::common::phase_output("explore")},
                {"phase": "requirements", "status": "running", "attempts": 1, "score": 0.4},
            ])
        );

        let failed = vec![
            next(
                "spec.phase_failed",
                json!({"phase": "requirements", "reason": "below the gate", "last_score": 0.4}),
            ),
            next(
                "spec.execution_failed",
                json!({"phase": "requirements", "reason": "below the gate after 3 attempts"}),
            ),
            next(
                "agent.failed",
                json!({"kind": "gate", "reason": "requirements did not pass"}),
            ),
        ];
        assert_eq!(
            sb.ingest(&sandbox, &failed).await,
            (StatusCode::OK, json!({"acked_seq": 13}))
        );
        let (_, detail) = api.get(&format!("/specs/{spec}")).await;
        assert_eq!(detail["status"], "failed");
        assert_eq!(
            detail["error"],
            "requirements failed: below the gate after 3 attempts"
        );
        assert_eq!(detail["phases"][1]["status"], "failed");
        assert_eq!(detail["sandboxes"][0]["status"], "failed");
        assert_eq!(detail["sandboxes"][0]["terminal"], "agent.failed");
        // The token outlives the terminal event a little, for the worker's last retries.
        assert_eq!(
            sb.ingest(&sandbox, &failed).await,
            (StatusCode::OK, json!({"acked_seq": 13}))
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_final_spec_is_stored_and_bridged_into_tasks() {
    each_backend(|db| async move {
        // No task slots: the bridged tasks stay as the bridge made them.
        let Scenario {
            server,
            api,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched_with(&db, |s| s.max_running_tasks = 0).await;
        let final_spec: Value = {
            let mut spec = json!({"title": "Add --shout", "description": ""});
            for phase in ["explore", "requirements", "design", "tasks"] {
                spec[phase] = super::common::phase_output(phase)[phase].clone();
            }
            spec["sync"] = json!({
                "coverage": [], "coverage_percent": 100.0, "uncovered": [],
                "topological_order": [], "parallel_groups": [], "critical_path": [],
                "critical_path_hours": 0.0, "total_hours": 0.0, "ready_for_execution": true
            });
            spec
        };
        let batch = vec![
            event(&sandbox, &spec, 1, "spec.execution_completed", final_spec.clone()),
            event(&sandbox, &spec, 2, "agent.completed", json!({"success": true, "counters": {"turns": 3, "tool_calls": 5, "usage": {"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.0}}})),
        ];
        assert_eq!(sb.ingest(&sandbox, &batch).await, (StatusCode::OK, json!({"acked_seq": 2})));
        let (_, detail) = api.get(&format!("/specs/{spec}")).await;
        // Written: its tasks run next.
        assert_eq!(detail["status"], "implementing");
        assert_eq!(detail["current_phase"], "complete");
        assert_eq!(detail["branch"], json!(format!("omoi/{spec}")));
        assert_eq!(detail["sandboxes"][0]["status"], "completed");
        let mut expected = final_spec;
        expected["sync"]["issues"] = json!([]);
        assert_eq!(detail["final_spec"], expected);

        // Bridged: one task per TSK, dependencies as coordinator ids.
        let (status, tasks) = api.get(&format!("/specs/{spec}/tasks")).await;
        assert_eq!(status, StatusCode::OK);
        let tasks = tasks.as_array().unwrap().clone();
        let id_of = |tsk: &str| -> Value {
            tasks.iter().find(|t| t["spec_task_id"] == tsk).unwrap()["id"].clone()
        };
        let ticket = tasks[0]["ticket_id"].clone();
        let sorted = |mut ids: Vec<Value>| {
            ids.sort_by_key(|v| v.as_str().unwrap().to_string());
            Value::Array(ids)
        };
        let expected: Vec<Value> = [
            ("TSK-001", "Add the shout function", "ready", vec![]),
            ("TSK-002", "Parse the --shout option", "ready", vec![]),
            ("TSK-003", "Print through shout when asked", "pending", vec!["TSK-001", "TSK-002"]),
            ("TSK-004", "Test and document --shout", "pending", vec!["TSK-003"]),
        ]
        .into_iter()
        .map(|(tsk, title, status, deps)| {
            json!({
                "id": id_of(tsk),
                "spec_id": spec,
                "ticket_id": ticket,
                "spec_task_id": tsk,
                "title": title,
                "status": status,
                "attempts": 0,
                "max_attempts": 3,
                "depends_on": sorted(deps.into_iter().map(id_of).collect()),
            })
        })
        .collect();
        assert_eq!(Value::Array(tasks.clone()), Value::Array(expected.clone()));
        let third = id_of("TSK-003");
        let third = third.as_str().unwrap();
        assert_eq!(api.get(&format!("/tasks/{third}")).await, (StatusCode::OK, expected[2].clone()));
        assert_eq!(detail["tasks"], Value::Array(expected));
        let (_, bob) = server.user("bob").await;
        assert_eq!(
            bob.get(&format!("/tasks/{third}")).await,
            (StatusCode::NOT_FOUND, error("not_found", &format!("no task {third}")))
        );

        assert_eq!(
            api.post(&format!("/specs/{spec}/execute"), &json!({})).await,
            (
                StatusCode::CONFLICT,
                error("conflict", &format!("spec {spec} is already implementing its tasks"))
            )
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stopping_after_a_phase_leaves_the_spec_pending_at_the_next_one() {
    each_backend(|db| async move {
        let Scenario {
            server,
            api,
            spec,
            sandbox,
            sandbox_api: sb,
            ..
        } = Scenario::launched(&db).await;
        let batch = vec![
            event(&sandbox, &spec, 1, "spec.phase_completed", phase_completed("explore", 0.9, 1)),
            event(&sandbox, &spec, 2, "agent.completed", json!({"success": true, "counters": {"turns": 1, "tool_calls": 1, "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}}, "stopped_after": "explore"})),
        ];
        assert_eq!(sb.ingest(&sandbox, &batch).await, (StatusCode::OK, json!({"acked_seq": 2})));
        let (_, detail) = api.get(&format!("/specs/{spec}")).await;
        assert_eq!((&detail["status"], &detail["current_phase"]), (&json!("pending"), &json!("requirements")));
        server.stop().await;
    })
    .await;
}
