//! What the provider knows of its sandboxes, kept by the poll ([`super::follow`]): being spawned,
//! running, being deleted, or ended with a status. `status` answers from here without a request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sandbox::ProviderStatus;

/// How long an ended sandbox's status is remembered.
const ENDED_KEPT: Duration = Duration::from_secs(3600);

/// One sandbox, by its Daytona id.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The coordinator's id of the sandbox (its `omoi.sandbox` label).
    pub sandbox_id: String,
    /// Its toolbox's base URL, once known.
    pub toolbox: String,
    pub state: State,
    /// Found by the poll rather than spawned here: its worker may not be started yet (another
    /// replica's spawn in progress), so a missing worker does not end it.
    pub adopted: bool,
    /// When the provider first heard of it.
    pub seen_at: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// `spawn` is creating it and starting the worker.
    Spawning,
    Running,
    /// `terminate` is deleting it.
    Terminating,
    Ended {
        status: ProviderStatus,
        at: Instant,
    },
}

/// The sandboxes by Daytona id.
#[derive(Debug, Default)]
pub struct Tracked {
    sandboxes: Mutex<HashMap<String, Entry>>,
}

impl Tracked {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data; carry on with it.
        self.sandboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets an entry (a sandbox being spawned, or found by the poll).
    pub fn insert(&self, id: &str, entry: Entry) {
        self.lock().insert(id.to_string(), entry);
    }

    /// Adds a sandbox found by the poll, unless it is known.
    pub fn adopt(&self, id: &str, sandbox_id: &str) -> bool {
        let mut map = self.lock();
        if map.contains_key(id) {
            return false;
        }
        map.insert(
            id.to_string(),
            Entry {
                sandbox_id: sandbox_id.to_string(),
                toolbox: String::new(),
                state: State::Running,
                adopted: true,
                seen_at: Instant::now(),
            },
        );
        true
    }

    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// Marks a spawned sandbox running and remembers its toolbox.
    pub fn running(&self, id: &str, toolbox: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.toolbox = toolbox.to_string();
            if entry.state == State::Spawning {
                entry.state = State::Running;
            }
        }
    }

    /// Remembers the toolbox of a sandbox.
    pub fn set_toolbox(&self, id: &str, toolbox: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.toolbox = toolbox.to_string();
        }
    }

    /// Ends a running sandbox with `status`; true when it was running (the caller then keeps its
    /// logs and deletes it), false when it had ended or is being deleted or spawned.
    pub fn end(&self, id: &str, status: ProviderStatus) -> bool {
        match self.lock().get_mut(id) {
            Some(entry) if entry.state == State::Running => {
                entry.state = State::Ended {
                    status,
                    at: Instant::now(),
                };
                true
            }
            _ => false,
        }
    }

    /// Marks the sandbox as being deleted; true when its worker may still run (it had not
    /// ended), so its logs are worth keeping.
    pub fn terminating(&self, id: &str) -> bool {
        let mut map = self.lock();
        match map.get_mut(id) {
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

    /// The sandbox was deleted by `terminate`.
    pub fn deleted(&self, id: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            if entry.state == State::Terminating {
                entry.state = State::Ended {
                    status: ProviderStatus::Exited { code: None },
                    at: Instant::now(),
                };
            }
        }
    }

    /// What `status` answers.
    pub fn status(&self, id: &str) -> Option<ProviderStatus> {
        self.lock().get(id).map(|entry| match &entry.state {
            State::Ended { status, .. } => status.clone(),
            _ => ProviderStatus::Running,
        })
    }

    /// The running sandboxes: id, coordinator id, toolbox.
    pub fn running_ones(&self) -> Vec<(String, Entry)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.state == State::Running)
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect()
    }

    /// Forgets sandboxes that ended more than an hour ago.
    pub fn sweep(&self) {
        self.lock().retain(|_, e| match &e.state {
            State::Ended { at, .. } => at.elapsed() < ENDED_KEPT,
            _ => true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn spawning() -> Entry {
        Entry {
            sandbox_id: "sb".into(),
            toolbox: String::new(),
            state: State::Spawning,
            adopted: false,
            seen_at: Instant::now(),
        }
    }

    #[test]
    fn an_end_is_taken_once_and_only_from_running() {
        let tracked = Tracked::default();
        tracked.insert("d1", spawning());
        assert_eq!(tracked.status("d1"), Some(ProviderStatus::Running));
        assert!(!tracked.end("d1", ProviderStatus::Exited { code: Some(0) }));
        tracked.running("d1", "http://toolbox");
        assert_eq!(tracked.get("d1").unwrap().toolbox, "http://toolbox");
        assert!(tracked.end("d1", ProviderStatus::Exited { code: Some(0) }));
        assert!(!tracked.end("d1", ProviderStatus::Exited { code: Some(1) }));
        assert_eq!(
            tracked.status("d1"),
            Some(ProviderStatus::Exited { code: Some(0) })
        );
        assert!(!tracked.terminating("d1"));
        assert_eq!(tracked.status("nope"), None);
    }

    #[test]
    fn a_terminated_sandbox_exits_and_adoption_keeps_what_is_known() {
        let tracked = Tracked::default();
        assert!(tracked.adopt("d2", "sb2"));
        assert!(!tracked.adopt("d2", "other"));
        assert_eq!(tracked.running_ones().len(), 1);
        assert!(tracked.terminating("d2"));
        assert!(tracked.running_ones().is_empty());
        tracked.deleted("d2");
        assert_eq!(
            tracked.status("d2"),
            Some(ProviderStatus::Exited { code: None })
        );
        tracked.sweep();
        assert!(tracked.get("d2").is_some());
    }
}
