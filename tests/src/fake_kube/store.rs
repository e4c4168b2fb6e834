//! The fake API server's object store: objects by kind, namespace and name, one resource-version
//! counter, the history of changes that watches replay from a version (compacted on demand, which
//! makes older versions answer 410 Gone), and the channel live watches hear changes on.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use tokio::sync::broadcast;

/// How many changes the history keeps before the oldest are compacted away.
const HISTORY: usize = 100_000;

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub struct Change {
    pub version: u64,
    pub kind: &'static str,
    pub namespace: String,
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub kind_of_change: &'static str,
    pub object: Value,
}

#[derive(Debug)]
pub struct Store {
    version: u64,
    /// (kind, namespace, name) → object.
    objects: BTreeMap<(&'static str, String, String), Value>,
    history: VecDeque<Change>,
    /// Versions at or below this are gone from the history.
    compacted: u64,
    changes: broadcast::Sender<Change>,
    /// Bumped to end every live watch.
    pub epoch: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            version: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            changes: broadcast::channel(16_384).0,
            epoch: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Store {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn get(&self, kind: &'static str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(kind, namespace.to_string(), name.to_string()))
    }

    /// The objects of a kind in a namespace, by name.
    pub fn list(&self, kind: &'static str, namespace: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, ns, _), _)| *k == kind && ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every object of a kind, in every namespace.
    pub fn all(&self, kind: &'static str) -> Vec<(String, Value)> {
        self.objects
            .iter()
            .filter(|((k, _, _), _)| *k == kind)
            .map(|((_, ns, _), v)| (ns.clone(), v.clone()))
            .collect()
    }

    /// Stores `object` (its `metadata.resourceVersion` set) and tells the watches.
    pub fn put(
        &mut self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        mut object: Value,
        change: &'static str,
    ) -> Value {
        self.version += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.version.to_string());
        self.objects.insert(
            (kind, namespace.to_string(), name.to_string()),
            object.clone(),
        );
        self.record(kind, namespace, change, object.clone());
        object
    }

    /// Removes an object and tells the watches (`DELETED` with the version of the deletion).
    pub fn remove(&mut self, kind: &'static str, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .remove(&(kind, namespace.to_string(), name.to_string()))?;
        self.version += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.version.to_string());
        self.record(kind, namespace, "DELETED", object.clone());
        Some(object)
    }

    fn record(&mut self, kind: &'static str, namespace: &str, change: &'static str, object: Value) {
        let change = Change {
            version: self.version,
            kind,
            namespace: namespace.to_string(),
            kind_of_change: change,
            object,
        };
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.version;
            }
        }
        let _ = self.changes.send(change);
    }

    /// The changes after `version` (`None` when it was compacted: 410 Gone), and a receiver of
    /// the later ones, taken together so that nothing falls between them.
    pub fn watch_from(&self, version: u64) -> Option<(Vec<Change>, broadcast::Receiver<Change>)> {
        if version < self.compacted {
            return None;
        }
        let past = self
            .history
            .iter()
            .filter(|c| c.version > version)
            .cloned()
            .collect();
        Some((past, self.changes.subscribe()))
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Forgets the history up to now and ends every watch: a watch resumed from an earlier
    /// version is answered 410 Gone, as after an etcd compaction.
    pub fn compact(&mut self) {
        // As etcd's revision moves on without a change here: every version a client holds is
        // now older than the compaction.
        self.version += 1;
        self.history.clear();
        self.compacted = self.version;
        self.epoch.send_modify(|e| *e += 1);
    }

    /// The oldest version a watch may still start from.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }
}
