//! What a pod's status says about its sandbox, without IO: pending (and why, in words), running,
//! or ended — with the worker's exit code, killed at its memory limit, evicted, past its deadline.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::manifest::CONTAINER;
use crate::sandbox::ProviderStatus;

/// A pod's state as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not running yet; why, when the status says (unschedulable, pulling the image …).
    Pending {
        why: Option<String>,
    },
    Running,
    Ended(ProviderStatus),
}

/// The worker container's status.
fn worker_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)
}

/// `reason: message`, or whichever of the two is there.
fn words(reason: Option<&str>, message: Option<&str>) -> Option<String> {
    match (
        reason.filter(|r| !r.is_empty()),
        message.filter(|m| !m.is_empty()),
    ) {
        (Some(r), Some(m)) => Some(format!("{r}: {m}")),
        (Some(r), None) => Some(r.to_string()),
        (None, Some(m)) => Some(m.to_string()),
        (None, None) => None,
    }
}

/// The memory limit of the worker container in MiB, when it is written in `Mi` or `Gi`.
fn memory_limit_mb(pod: &Pod) -> Option<u64> {
    let container = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let quantity = &container
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")?
        .0;
    if let Some(mb) = quantity.strip_suffix("Mi") {
        return mb.parse().ok();
    }
    quantity
        .strip_suffix("Gi")
        .and_then(|gb| gb.parse::<u64>().ok())
        .map(|gb| gb.saturating_mul(1024))
}

/// Why a pending pod is not running: its scheduling condition, else its container's waiting
/// reason (e.g. `ErrImagePull`, `CreateContainerConfigError`).
fn pending_why(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let unscheduled = status
        .conditions
        .as_ref()
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
        .and_then(|c| words(c.reason.as_deref(), c.message.as_deref()));
    unscheduled.or_else(|| {
        let waiting = worker_status(pod)?.state.as_ref()?.waiting.as_ref()?;
        words(waiting.reason.as_deref(), waiting.message.as_deref())
    })
}

/// The state of `pod`.
pub fn classify(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let terminated = worker_status(pod)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    match phase {
        "Succeeded" => PodState::Ended(ProviderStatus::Exited {
            code: Some(terminated.map_or(0, |t| t.exit_code)),
        }),
        "Failed" => {
            let reason = status.and_then(|s| s.reason.as_deref());
            let message = status.and_then(|s| s.message.as_deref());
            if let Some(t) = terminated {
                if t.reason.as_deref() == Some("OOMKilled") {
                    return PodState::Ended(ProviderStatus::OutOfMemory {
                        limit_mb: memory_limit_mb(pod),
                    });
                }
            }
            match reason {
                Some("Evicted") => PodState::Ended(ProviderStatus::Lost {
                    reason: format!(
                        "was evicted from its node{}",
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    ),
                }),
                Some("DeadlineExceeded") => PodState::Ended(ProviderStatus::Lost {
                    reason: "ran past its deadline (activeDeadlineSeconds)".to_string(),
                }),
                _ => match terminated {
                    Some(t) => PodState::Ended(ProviderStatus::Exited {
                        code: Some(t.exit_code),
                    }),
                    None => PodState::Ended(ProviderStatus::Lost {
                        reason: format!(
                            "failed: {}",
                            words(reason, message).unwrap_or_else(|| "no reason given".into())
                        ),
                    }),
                },
            }
        }
        "Running" => PodState::Running,
        // `Unknown`: the node stopped reporting; the worker's silence decides.
        "Unknown" => PodState::Running,
        _ => PodState::Pending {
            why: pending_why(pod),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "omoi-x"},
            "spec": {"containers": [{"name": "worker", "image": "i",
                "resources": {"limits": {"memory": "512Mi"}}}]},
            "status": status,
        }))
        .unwrap()
    }

    fn terminated(phase: &str, code: i32, reason: &str) -> Pod {
        pod(
            json!({"phase": phase, "containerStatuses": [{"name": "worker", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason}}}]}),
        )
    }

    #[test]
    fn each_way_a_pod_ends_reads_as_a_status() {
        assert_eq!(
            classify(&terminated("Succeeded", 0, "Completed")),
            PodState::Ended(ProviderStatus::Exited { code: Some(0) })
        );
        assert_eq!(
            classify(&terminated("Failed", 3, "Error")),
            PodState::Ended(ProviderStatus::Exited { code: Some(3) })
        );
        assert_eq!(
            classify(&terminated("Failed", 137, "OOMKilled")),
            PodState::Ended(ProviderStatus::OutOfMemory {
                limit_mb: Some(512)
            })
        );
        assert_eq!(
            classify(&pod(json!({"phase": "Failed", "reason": "Evicted",
                "message": "The node was low on resource: memory."}))),
            PodState::Ended(ProviderStatus::Lost {
                reason: "was evicted from its node: The node was low on resource: memory.".into()
            })
        );
        assert_eq!(
            classify(&pod(
                json!({"phase": "Failed", "reason": "DeadlineExceeded"})
            )),
            PodState::Ended(ProviderStatus::Lost {
                reason: "ran past its deadline (activeDeadlineSeconds)".into()
            })
        );
        assert_eq!(
            classify(&pod(json!({"phase": "Failed"}))),
            PodState::Ended(ProviderStatus::Lost {
                reason: "failed: no reason given".into()
            })
        );
    }

    #[test]
    fn a_pending_pod_says_why() {
        assert_eq!(
            classify(&pod(
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."}]})
            )),
            PodState::Pending {
                why: Some("Unschedulable: 0/3 nodes are available: 3 Insufficient memory.".into())
            }
        );
        assert_eq!(
            classify(&pod(
                json!({"phase": "Pending", "containerStatuses": [{"name": "worker",
                "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull"}}}]})
            )),
            PodState::Pending {
                why: Some("ErrImagePull".into())
            }
        );
        assert_eq!(classify(&pod(json!({}))), PodState::Pending { why: None });
        assert_eq!(
            classify(&pod(json!({"phase": "Running"}))),
            PodState::Running
        );
    }
}
