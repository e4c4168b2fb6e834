//! The relay between replicas: hears the notices the other coordinators send through the
//! database (PostgreSQL `LISTEN/NOTIFY`) and feeds them to this replica's hub, so a live stream
//! here carries what any replica ingested, and wakes the standby polls waiting here for an
//! assignment another replica stored. Nothing to do on SQLite (one coordinator).
//!
//! Invariant: a gap in what the relay heard (its connection was lost) makes every stream read
//! the store again after the last cursor it sent, so no event is skipped, and every waiting
//! standby poll look at the store, so no assignment waits for its poll's slow re-check.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::error::Result;
use crate::hub::{Notice, StatusNotice, StreamItem};
use crate::store::postgres::{Heard, Listener};

/// How long the relay waits before listening again after an error.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Relays notices until `shutdown`; returns at once on SQLite.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut listener: Option<Listener> = None;
    loop {
        let heard = match listener.as_mut() {
            Some(l) => tokio::select! {
                () = shutdown.cancelled() => return,
                heard = l.recv() => heard,
            },
            None => match state.store.listener().await {
                Ok(Some(l)) => {
                    listener = Some(l);
                    // Whatever was sent before it listened is in the store.
                    Ok(Heard::Gap)
                }
                Ok(None) => return,
                Err(e) => Err(e),
            },
        };
        match heard {
            Ok(Heard::Notice(notice)) => {
                if let Err(e) = relay(&state, notice).await {
                    tracing::warn!(error = %e, "relaying a notice failed");
                }
            }
            // A standby's poll, wherever its assignment was stored, wakes at once.
            Ok(Heard::Standby(id)) => state.standby_wakers.wake(&id),
            Ok(Heard::Gap) => {
                state.hub.publish_all(&StreamItem::Reread);
                // An assignment may have been missed: every waiting poll reads the store.
                state.standby_wakers.wake_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening to the other replicas failed");
                listener = None;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}

/// Feeds one notice to the hub (events: the cursor, read by the streams from the store; status:
/// the spec as stored now, unless this replica sent it).
async fn relay(state: &AppState, notice: Notice) -> Result<()> {
    match notice {
        Notice::Events { spec_id, cursor } => {
            state.hub.publish(&spec_id, StreamItem::Stored(cursor));
        }
        Notice::Status { spec_id, replica } => {
            if replica == state.settings.replica_id || !state.hub.has_subscribers(&spec_id) {
                return Ok(());
            }
            if let Some(spec) = state.store.spec_by_id(&spec_id).await? {
                state
                    .hub
                    .publish(&spec_id, StreamItem::Status(StatusNotice::from(&spec)));
            }
        }
    }
    Ok(())
}
