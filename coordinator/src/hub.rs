//! The live fan-out: one broadcast channel per spec, fed after each commit, read by SSE streams.
//!
//! Invariant: an event reaches the hub only after it is stored; a stream that falls behind
//! re-reads the store, so the hub may drop messages but the stream never skips one.
//!
//! Several replicas: what another replica stored arrives as a [`Notice`] (PostgreSQL
//! `LISTEN/NOTIFY`, carrying ids and cursors only) and enters the hub as [`StreamItem::Stored`]
//! or [`StreamItem::Reread`]: the streams read the events themselves from the store, in cursor
//! order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use omoi_protocol::phase::Phase;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::model::{PullRequestRef, Spec, SpecStatus, StreamEvent};

/// How many messages a slow subscriber may fall behind before it re-reads the store.
const CHANNEL_CAPACITY: usize = 1024;

/// The state of a spec, sent on the live stream when it changes (not stored, no cursor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusNotice {
    pub spec_id: String,
    pub status: SpecStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The spec branch, once the spec is bridged into tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The pull request, once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
}

impl From<&Spec> for StatusNotice {
    fn from(spec: &Spec) -> Self {
        StatusNotice {
            spec_id: spec.id.clone(),
            status: spec.status,
            current_phase: spec.current_phase,
            error: spec.error.clone(),
            branch: spec.branch.clone(),
            pull_request: spec.pull_request.clone(),
        }
    }
}

/// One message of a spec's live stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(StreamEvent),
    Status(StatusNotice),
    /// The store holds the spec's events up to this cursor (stored by another replica): a
    /// stream that has not sent it reads the store.
    Stored(i64),
    /// Notices may have been missed (the listener reconnected): every stream reads the store.
    Reread,
}

/// What one replica tells the others through the database: small, so it fits a notification
/// payload whatever the events were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A spec's stream grew up to `cursor`.
    Events { spec_id: String, cursor: i64 },
    /// A spec's status changed on `replica`.
    Status { spec_id: String, replica: String },
}

impl Notice {
    /// The spec it is about.
    pub fn spec_id(&self) -> &str {
        match self {
            Notice::Events { spec_id, .. } | Notice::Status { spec_id, .. } => spec_id,
        }
    }
}

/// The channels of every spec that has a subscriber, and the per-spec ingest locks.
#[derive(Debug, Default)]
pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<StreamItem>>>,
    ingest_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Hub {
    /// Subscribes to a spec's live stream.
    pub fn subscribe(&self, spec_id: &str) -> broadcast::Receiver<StreamItem> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels
            .entry(spec_id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Sends to a spec's subscribers; forgets the channel when nobody listens any more.
    pub fn publish(&self, spec_id: &str, item: StreamItem) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.get(spec_id) {
            if sender.send(item).is_err() {
                channels.remove(spec_id);
            }
        }
    }

    /// Whether anyone subscribes to a spec's stream here.
    pub fn has_subscribers(&self, spec_id: &str) -> bool {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels
            .get(spec_id)
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// Sends `item` to every stream (after a gap in what this replica heard of the others).
    pub fn publish_all(&self, item: &StreamItem) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.retain(|_, sender| sender.send(item.clone()).is_ok());
    }

    /// The lock that keeps one spec's ingests (and so its stream releases) in order within this
    /// process.
    pub fn ingest_lock(&self, spec_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .ingest_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(spec_id.to_string()).or_default().clone()
    }
}
