//! What real containers do to a spec, on the machine's Docker Engine: a spec container killed
//! mid-phase, its network cut for 30 s mid-phase, a sandbox over its memory limit. After each,
//! nothing of the test is left on the Engine. Same preconditions as the `docker` suite
//! (see `common::docker`).

use std::time::Duration;

use bollard::models::{MountType, NetworkConnectRequest, NetworkDisconnectRequest};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::common::docker::{
    Sandboxes, all_completed, assert_every_event_once_in_order, launch, phase_summary, script,
    spec_sandboxes, tune, wait_for_design, wait_for_status,
};
use super::common::sqlite;
use omoi_coordinator::sandbox::Limits;

/// How long the network of the sandbox stays cut.
const CUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_killed_spec_container_is_replaced_after_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // DESIGN's first answer takes 4 s: time to look at the container and kill it mid-phase.
    let file = script(tmp.path(), |s| s["design"][0][0]["delay_ms"] = json!(4_000));
    let Some(sandboxes) =
        Sandboxes::start(&tmp.path().join("data"), |c| c.files = vec![file]).await
    else {
        return;
    };
    let db = sqlite();
    let launched = launch(&db, &sandboxes, |s| tune(s, 2)).await;
    let first = wait_for_design(&launched.api, &launched.spec_id).await;
    let name = format!("omoi-{first}");
    let docker = sandboxes.provider.client();

    // The container as the provider made it: locked down, labelled, limited, no host mounts.
    let info = docker.inspect_container(&name, None).await.unwrap();
    let config = info.config.unwrap();
    let host = info.host_config.unwrap();
    let labels = config.labels.unwrap_or_default();
    let mounts: Vec<(Option<MountType>, Option<String>)> = host
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.typ, m.target))
        .collect();
    assert_eq!(
        (
            config.user.as_deref(),
            config.working_dir.as_deref(),
            host.readonly_rootfs,
            host.privileged,
            host.cap_drop,
            host.security_opt,
            host.binds,
            mounts,
            host.network_mode.as_deref(),
        ),
        (
            Some("omoi"),
            Some("/work/repo"),
            Some(true),
            Some(false),
            Some(vec!["ALL".to_string()]),
            Some(vec!["no-new-privileges".to_string()]),
            None,
            vec![(Some(MountType::VOLUME), Some("/work".to_string()))],
            Some(sandboxes.provider.network()),
        )
    );
    assert_eq!(
        (
            host.memory,
            host.memory_swap,
            host.pids_limit,
            labels.get("omoi.spec").map(String::as_str),
            labels.get("omoi.sandbox").map(String::as_str),
            labels.get("omoi.instance").map(String::as_str),
        ),
        (
            Some(2048 * 1024 * 1024),
            Some(2048 * 1024 * 1024),
            Some(1024),
            Some(launched.spec_id.as_str()),
            Some(first.as_str()),
            Some(sandboxes.provider.instance()),
        )
    );

    docker.kill_container(&name, None).await.unwrap();
    let done = wait_for_status(&launched.api, &launched.spec_id, "completed").await;
    assert_eq!(phase_summary(&done), all_completed());
    assert_eq!(done["recoveries"], 1);
    let sandboxes_of_spec = spec_sandboxes(&done);
    assert_eq!(sandboxes_of_spec.len(), 2);
    assert_eq!(
        (
            &sandboxes_of_spec[0]["id"],
            &sandboxes_of_spec[0]["status"],
            &sandboxes_of_spec[0]["start_phase"],
            &sandboxes_of_spec[0]["reason"],
        ),
        (
            &json!(first),
            &json!("lost"),
            &json!("explore"),
            &json!("the worker exited with code 137 without a terminal event"),
        )
    );
    assert_eq!(
        (
            &sandboxes_of_spec[1]["status"],
            &sandboxes_of_spec[1]["start_phase"]
        ),
        (&json!("completed"), &json!("design"))
    );
    let second = sandboxes_of_spec[1]["id"].as_str().unwrap().to_string();
    assert_every_event_once_in_order(&launched, &second).await;
    launched.server.stop().await;
    sandboxes.close_and_assert_clean().await;
}

#[tokio::test]
async fn a_network_cut_of_30_s_mid_phase_loses_and_repeats_no_event() {
    let tmp = tempfile::tempdir().unwrap();
    // DESIGN answers after 12 s (while the network is cut) and again after 25 s more (after it is
    // back), so events are made during the cut and the worker is still in the phase at the end.
    let file = script(tmp.path(), |s| {
        s["design"][0][0]["delay_ms"] = json!(12_000);
        s["design"][0][1]["delay_ms"] = json!(25_000);
    });
    let Some(sandboxes) =
        Sandboxes::start(&tmp.path().join("data"), |c| c.files = vec![file]).await
    else {
        return;
    };
    let db = sqlite();
    // Heartbeats every 20 s: the sandbox is lost only after 60 s of silence, longer than the cut
    // and the worker's longest retry delay after it.
    let launched = launch(&db, &sandboxes, |s| tune(s, 20)).await;
    let sandbox = wait_for_design(&launched.api, &launched.spec_id).await;
    let name = format!("omoi-{sandbox}");
    let docker = sandboxes.provider.client();
    let network = sandboxes.provider.network();

    let cut_at = chrono::Utc::now();
    docker
        .disconnect_network(
            network,
            NetworkDisconnectRequest {
                container: name.clone(),
                force: Some(true),
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(CUT).await;
    let back_at = chrono::Utc::now();
    docker
        .connect_network(
            network,
            NetworkConnectRequest {
                container: name.clone(),
                endpoint_config: None,
            },
        )
        .await
        .unwrap();

    let done = wait_for_status(&launched.api, &launched.spec_id, "completed").await;
    assert_eq!(phase_summary(&done), all_completed());
    assert_eq!(done["recoveries"], 0);
    let sandboxes_of_spec = spec_sandboxes(&done);
    assert_eq!(sandboxes_of_spec.len(), 1, "{sandboxes_of_spec:?}");
    assert_eq!(sandboxes_of_spec[0]["status"], "completed");
    let n = assert_every_event_once_in_order(&launched, &sandbox).await;
    let events = launched
        .server
        .store
        .sandbox_events(&sandbox)
        .await
        .unwrap();
    assert_eq!(events.len() as u64, n);
    let made_during_cut: Vec<&str> = events
        .iter()
        .filter(|e| e.at > cut_at && e.at < back_at)
        .map(|e| e.kind.as_str())
        .collect();
    assert!(
        made_during_cut.contains(&"agent.tool_use"),
        "events made while the network was cut: {made_during_cut:?}"
    );
    launched.server.stop().await;
    sandboxes.close_and_assert_clean().await;
}

#[tokio::test]
async fn a_sandbox_over_its_memory_limit_is_lost_with_the_reason_and_the_spec_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // DESIGN starts by filling /tmp (a tmpfs, charged to the container's memory) past the limit:
    // the kernel kills the largest process of the container, the worker. It waits a moment first,
    // so that the checkpoints of the phases before have been delivered.
    let file = script(tmp.path(), |s| {
        let turns = s["design"][0].as_array_mut().unwrap();
        turns.insert(
            0,
            json!({
                "delay_ms": 1_500,
                "text": "Let me make room for a large build first.",
                "tool_calls": [{"name": "run", "input": {
                    "command": "head -c 200m /dev/zero > /tmp/fill", "timeout_secs": 120
                }}]
            }),
        );
    });
    let Some(sandboxes) = Sandboxes::start(&tmp.path().join("data"), |c| {
        c.files = vec![file];
        c.limits = Limits {
            memory_mb: Some(64),
            cpus: Some(1.0),
        };
    })
    .await
    else {
        return;
    };
    let db = sqlite();
    let launched = launch(&db, &sandboxes, |s| {
        tune(s, 2);
        s.max_recoveries = 1;
    })
    .await;
    let done = wait_for_status(&launched.api, &launched.spec_id, "failed").await;
    let reason = "the worker was killed: out of memory (limit 64 MiB) without a terminal event";
    assert_eq!(
        done["error"],
        json!(format!("the sandbox was lost 2 times; last: {reason}"))
    );
    let ended: Vec<(String, String, String)> = spec_sandboxes(&done)
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_string(),
                s["start_phase"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        ended,
        vec![
            ("lost".into(), "explore".into(), reason.into()),
            ("lost".into(), "design".into(), reason.into()),
        ]
    );
    let phases = phase_summary(&done);
    assert_eq!(
        phases[..2],
        all_completed()[..2],
        "the checkpoints before DESIGN stay"
    );
    launched.server.stop().await;
    sandboxes.close_and_assert_clean().await;
}
