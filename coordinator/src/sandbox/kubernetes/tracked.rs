//! What the provider knows of its sandboxes' pods (or Sandboxes), kept from the watch: live (pending since when, and why),
//! being deleted, or ended with a status. `status` answers from here without a request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sandbox::ProviderStatus;

/// How long an ended pod's status is remembered after it is gone.
const ENDED_KEPT: Duration = Duration::from_secs(3600);

/// One pod the provider follows.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sandbox_id: String,
    pub state: State,
    /// When the provider first heard of the pod (spawned here, or listed).
    pub seen_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Created, not running yet: since when (the pod's creation, in Unix seconds) and why.
    Pending {
        since: i64,
        why: Option<String>,
    },
    Running,
    /// `terminate` asked for its deletion.
    Terminating,
    /// Ended; the status stays for [`ENDED_KEPT`].
    Ended {
        status: ProviderStatus,
        at: Instant,
    },
}

/// The pods by name.
#[derive(Debug, Default)]
pub struct Tracked {
    pods: Mutex<HashMap<String, Entry>>,
}

/// What a caller must do after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Nothing,
    /// The pod ended just now: keep its logs, delete it.
    Ended {
        sandbox_id: String,
    },
}

impl Tracked {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data; carry on with it.
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A pod just created by `spawn`.
    /// The watch may have told of it first; what it told stays.
    pub fn created(&self, name: &str, sandbox_id: &str, since: i64) {
        self.lock()
            .entry(name.to_string())
            .or_insert_with(|| Entry {
                sandbox_id: sandbox_id.to_string(),
                state: State::Pending { since, why: None },
                seen_at: Instant::now(),
            });
    }

    /// The sandbox id of the object `name`, when it is followed.
    pub fn sandbox_id(&self, name: &str) -> Option<String> {
        self.lock().get(name).map(|e| e.sandbox_id.clone())
    }

    /// Forgets a pod whose spawn failed.
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// The pod's state as the watch last told it.
    pub fn update(&self, name: &str, sandbox_id: &str, state: State) -> Change {
        let mut pods = self.lock();
        let entry = pods.entry(name.to_string()).or_insert_with(|| Entry {
            sandbox_id: sandbox_id.to_string(),
            state: state.clone(),
            seen_at: Instant::now(),
        });
        let was_ended = matches!(entry.state, State::Ended { .. });
        match (&entry.state, state) {
            // An end is final; a late event of the pod changes nothing.
            (State::Ended { .. }, _) => Change::Nothing,
            // Being deleted: the pod's last status still tells how the worker ended.
            (State::Terminating, State::Ended { status, at }) => {
                entry.state = State::Ended { status, at };
                Change::Nothing
            }
            (State::Terminating, _) => Change::Nothing,
            (_, State::Ended { status, at }) => {
                entry.state = State::Ended { status, at };
                if was_ended {
                    Change::Nothing
                } else {
                    Change::Ended {
                        sandbox_id: entry.sandbox_id.clone(),
                    }
                }
            }
            (_, state) => {
                entry.state = state;
                Change::Nothing
            }
        }
    }

    /// The pod is gone from the cluster. One that had not ended is lost, with `reason`.
    pub fn deleted(&self, name: &str, reason: &str) {
        let mut pods = self.lock();
        if let Some(entry) = pods.get_mut(name) {
            match entry.state {
                State::Ended { .. } => {}
                State::Terminating => {
                    entry.state = State::Ended {
                        status: ProviderStatus::Exited { code: None },
                        at: Instant::now(),
                    }
                }
                _ => {
                    entry.state = State::Ended {
                        status: ProviderStatus::Lost {
                            reason: reason.to_string(),
                        },
                        at: Instant::now(),
                    }
                }
            }
        }
    }

    /// Marks the pod as being deleted by `terminate`; false when it had ended already.
    pub fn terminating(&self, name: &str) -> bool {
        let mut pods = self.lock();
        match pods.get_mut(name) {
            Some(Entry {
                state: State::Ended { .. },
                ..
            }) => false,
            Some(entry) => {
                entry.state = State::Terminating;
                true
            }
            None => true,
        }
    }

    /// Whether the sandbox has ended already (a late event of it changes nothing).
    pub fn has_ended(&self, name: &str) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|e| matches!(e.state, State::Ended { .. }))
    }

    /// What `status` answers.
    pub fn status(&self, name: &str) -> Option<ProviderStatus> {
        self.lock().get(name).map(|entry| match &entry.state {
            State::Ended { status, .. } => status.clone(),
            _ => ProviderStatus::Running,
        })
    }

    /// The names of live pods first heard of before `before` (a relist that does not show one
    /// means it was deleted while no watch ran).
    pub fn live_before(&self, before: Instant) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.seen_at < before && !matches!(e.state, State::Ended { .. }))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Pods pending for longer than `limit` at `now` (Unix seconds), now ended as lost with the
    /// reason; and ended pods forgotten after an hour.
    pub fn sweep(&self, now: i64, limit: Duration) -> Vec<(String, String)> {
        let mut pods = self.lock();
        pods.retain(|_, e| match &e.state {
            State::Ended { at, .. } => at.elapsed() < ENDED_KEPT,
            _ => true,
        });
        let limit_secs = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
        let mut stuck = Vec::new();
        for (name, entry) in pods.iter_mut() {
            if let State::Pending { since, why } = &entry.state {
                if now.saturating_sub(*since) >= limit_secs {
                    let reason = format!(
                        "was pending for more than {} s{}",
                        limit.as_secs(),
                        why.as_deref().map(|w| format!(": {w}")).unwrap_or_default()
                    );
                    entry.state = State::Ended {
                        status: ProviderStatus::Lost { reason },
                        at: Instant::now(),
                    };
                    stuck.push((name.clone(), entry.sandbox_id.clone()));
                }
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_is_reported_once_and_is_final() {
        let tracked = Tracked::default();
        tracked.created("p", "sb", 100);
        assert_eq!(tracked.status("p"), Some(ProviderStatus::Running));
        assert_eq!(tracked.update("p", "sb", State::Running), Change::Nothing);
        let ended = State::Ended {
            status: ProviderStatus::Exited { code: Some(0) },
            at: Instant::now(),
        };
        assert_eq!(
            tracked.update("p", "sb", ended.clone()),
            Change::Ended {
                sandbox_id: "sb".into()
            }
        );
        assert_eq!(tracked.update("p", "sb", ended), Change::Nothing);
        tracked.deleted("p", "gone");
        assert_eq!(
            tracked.status("p"),
            Some(ProviderStatus::Exited { code: Some(0) })
        );
        assert_eq!(tracked.status("q"), None);
    }

    #[test]
    fn a_pod_pending_too_long_is_lost_with_the_reason() {
        let tracked = Tracked::default();
        tracked.created("p", "sb", 100);
        tracked.update(
            "p",
            "sb",
            State::Pending {
                since: 100,
                why: Some("Unschedulable: 0/1 nodes are available".into()),
            },
        );
        assert!(tracked.sweep(150, Duration::from_secs(60)).is_empty());
        assert_eq!(
            tracked.sweep(160, Duration::from_secs(60)),
            vec![("p".to_string(), "sb".to_string())]
        );
        assert_eq!(
            tracked.status("p"),
            Some(ProviderStatus::Lost {
                reason: "was pending for more than 60 s: Unschedulable: 0/1 nodes are available"
                    .into()
            })
        );
    }

    #[test]
    fn a_pod_deleted_behind_the_providers_back_is_lost() {
        let tracked = Tracked::default();
        tracked.created("p", "sb", 1);
        tracked.deleted("p", "was deleted before it ended");
        assert_eq!(
            tracked.status("p"),
            Some(ProviderStatus::Lost {
                reason: "was deleted before it ended".into()
            })
        );
        tracked.created("t", "sb2", 1);
        assert!(tracked.terminating("t"));
        tracked.deleted("t", "x");
        assert_eq!(
            tracked.status("t"),
            Some(ProviderStatus::Exited { code: None })
        );
    }
}
