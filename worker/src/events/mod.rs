//! Event emission: the [`Emitter`] stamps events with ids and a per-sandbox seq and hands them to
//! one delivery task (stdout for a local run, the coordinator over HTTP otherwise).
//!
//! Invariant: seq order is emission order, without gaps, across worker restarts in one workspace
//! (HTTP mode: the spool remembers the last seq; see `spool`).
//!
//! Invariant: [`Emitter::emit`] is the one masking point of events: every event is masked
//! ([`Masker`]) before it is spooled or sent, so no known secret value leaves the worker in one.

mod retry;
pub mod sender;
pub mod spool;
mod stdout;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use omoi_protocol::event::{Counters, ENVELOPE_VERSION, Envelope, Event, Usage};
use omoi_protocol::phase::Phase;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::secrets::Masker;

/// Ids every event of this run carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIds {
    pub sandbox_id: String,
    pub spec_id: Option<String>,
    pub task_id: Option<String>,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// Local run: one JSON event per line on stdout, nothing else there.
    Stdout,
    /// `POST {base_url}/api/v1/sandboxes/{sandbox_id}/events` with the sandbox token;
    /// unacked events are spooled in `spool_dir` (`.omoi/` of the workspace).
    Http {
        base_url: String,
        token: String,
        spool_dir: PathBuf,
    },
}

/// How to deliver events.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub ids: EventIds,
    pub sink: SinkConfig,
    /// Interval of `agent.heartbeat`; zero disables heartbeats.
    pub heartbeat: Duration,
    /// Masks the secrets of the run in every event.
    pub masker: Masker,
}

/// What the worker is doing now, for heartbeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub phase: Option<Phase>,
    pub task_id: Option<String>,
    pub counters: Counters,
}

/// Cheap to clone; every clone feeds the same stream.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("ids", &self.inner.ids)
            .finish()
    }
}

struct Inner {
    ids: EventIds,
    emit: Mutex<EmitState>,
    status: Mutex<Status>,
}

struct EmitState {
    next_seq: u64,
    tx: mpsc::UnboundedSender<Envelope>,
    spool: Option<spool::SharedSpool>,
    masker: Masker,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data half-written (plain counters
    // and a channel), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Emitter {
    /// An emitter that feeds `tx`, starting at `next_seq`, appending to `spool` first if given.
    pub fn new(
        ids: EventIds,
        next_seq: u64,
        tx: mpsc::UnboundedSender<Envelope>,
        spool: Option<spool::SharedSpool>,
    ) -> Self {
        let status = Status {
            task_id: ids.task_id.clone(),
            ..Status::default()
        };
        Emitter {
            inner: Arc::new(Inner {
                ids,
                emit: Mutex::new(EmitState {
                    next_seq,
                    tx,
                    spool,
                    masker: Masker::default(),
                }),
                status: Mutex::new(status),
            }),
        }
    }

    /// An emitter whose events arrive on the returned receiver (tests, embedding).
    pub fn channel(ids: EventIds) -> (Self, mpsc::UnboundedReceiver<Envelope>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Emitter::new(ids, 1, tx, None), rx)
    }

    pub fn ids(&self) -> &EventIds {
        &self.inner.ids
    }

    /// Masks `masker`'s secrets in every event emitted from now on.
    pub fn set_masker(&self, masker: Masker) {
        lock(&self.inner.emit).masker = masker;
    }

    /// Stamps and sends one event; returns its seq. With a spool, the event is on disk before
    /// this returns, so a killed worker loses no emitted event.
    pub fn emit(&self, event: Event) -> u64 {
        let mut state = lock(&self.inner.emit);
        let event = mask(&state.masker, event);
        let seq = state.next_seq;
        state.next_seq += 1;
        let envelope = Envelope {
            v: ENVELOPE_VERSION,
            sandbox_id: self.inner.ids.sandbox_id.clone(),
            seq,
            at: Utc::now(),
            spec_id: self.inner.ids.spec_id.clone(),
            task_id: self.inner.ids.task_id.clone(),
            event,
        };
        if let Some(spool) = &state.spool {
            if let Err(err) = lock(spool).append(&envelope) {
                tracing::warn!(%err, seq, "could not spool event; it is sent but not kept for a restart");
            }
        }
        if state.tx.send(envelope).is_err() {
            tracing::warn!(seq, "event delivery has stopped; event dropped");
        }
        seq
    }

    pub fn set_phase(&self, phase: Option<Phase>) {
        lock(&self.inner.status).phase = phase;
    }

    pub fn count_turn(&self) {
        lock(&self.inner.status).counters.turns += 1;
    }

    pub fn count_tool_call(&self) {
        lock(&self.inner.status).counters.tool_calls += 1;
    }

    pub fn add_usage(&self, usage: Usage) {
        let mut status = lock(&self.inner.status);
        let total = &mut status.counters.usage;
        total.input_tokens += usage.input_tokens;
        total.output_tokens += usage.output_tokens;
        total.cost_usd += usage.cost_usd;
    }

    pub fn status(&self) -> Status {
        lock(&self.inner.status).clone()
    }
}

/// `event` with every secret of `masker` replaced. An event that would not read back after
/// masking (a secret in a tag or a number) is replaced by a message that says so: it is never
/// let through as it was.
fn mask(masker: &Masker, event: Event) -> Event {
    let withheld = || {
        Event::AgentMessage(omoi_protocol::event::AgentMessage {
            text: "(an event was withheld: it held a secret that could not be masked)".into(),
        })
    };
    if masker.is_empty() {
        return event;
    }
    let Ok(mut value) = serde_json::to_value(&event) else {
        return withheld();
    };
    if !masker.mask_json(&mut value) {
        return event;
    }
    serde_json::from_value(value).unwrap_or_else(|_| withheld())
}

/// The running delivery: the sink task and the heartbeat task.
pub struct Delivery {
    sink: JoinHandle<DeliveryReport>,
    heartbeat: Option<JoinHandle<()>>,
    signals: SinkSignals,
}

/// How [`Delivery::finish`] talks to a sink task.
#[derive(Debug, Clone, Default)]
pub struct SinkSignals {
    /// Set when the run is over: send everything already emitted, then return.
    pub closing: CancellationToken,
    /// Set when the drain deadline passed: return now, leaving the rest in the spool.
    pub abort: CancellationToken,
}

/// What delivery achieved by the time it finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Events the sink accepted.
    pub delivered: u64,
    /// Events still unacked at the deadline (they stay in the spool for a restart).
    pub unsent: u64,
}

/// Starts delivery as configured and returns the emitter that feeds it.
pub async fn start(config: EventsConfig) -> Result<(Emitter, Delivery)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let signals = SinkSignals::default();
    let (emitter, sink) = match config.sink {
        SinkConfig::Stdout => {
            let emitter = Emitter::new(config.ids, 1, tx, None);
            emitter.set_masker(config.masker);
            (emitter, tokio::spawn(stdout::run(rx, signals.clone())))
        }
        SinkConfig::Http {
            base_url,
            token,
            spool_dir,
        } => {
            let recovered = spool::Spool::open_for_sandbox(&spool_dir, &config.ids.sandbox_id)?;
            let next_seq = recovered.next_seq;
            // Events a killed predecessor emitted but never got acked go first, in order.
            for envelope in recovered.unacked {
                if tx.send(envelope).is_err() {
                    break;
                }
            }
            let spool = Arc::new(Mutex::new(recovered.spool));
            let emitter = Emitter::new(config.ids.clone(), next_seq, tx, Some(spool.clone()));
            emitter.set_masker(config.masker);
            let sender = sender::HttpSender::new(&base_url, &config.ids.sandbox_id, &token, spool)?;
            (emitter, tokio::spawn(sender.run(rx, signals.clone())))
        }
    };
    let heartbeat = (!config.heartbeat.is_zero()).then(|| {
        tokio::spawn(heartbeat(
            emitter.clone(),
            config.heartbeat,
            signals.closing.clone(),
        ))
    });
    Ok((
        emitter,
        Delivery {
            sink,
            heartbeat,
            signals,
        },
    ))
}

async fn heartbeat(emitter: Emitter, every: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {
                let status = emitter.status();
                emitter.emit(Event::AgentHeartbeat(omoi_protocol::event::AgentHeartbeat {
                    phase: status.phase,
                    task_id: status.task_id,
                    counters: status.counters,
                }));
            }
        }
    }
}

impl Delivery {
    /// Stops heartbeats, lets the sink send everything emitted so far, and waits at most
    /// `deadline`; what is still unsent then stays in the spool for a restart.
    pub async fn finish(self, deadline: Duration) -> DeliveryReport {
        self.signals.closing.cancel();
        if let Some(heartbeat) = self.heartbeat {
            let _ = heartbeat.await;
        }
        let mut sink = self.sink;
        tokio::select! {
            joined = &mut sink => joined.unwrap_or_default(),
            _ = tokio::time::sleep(deadline) => {
                self.signals.abort.cancel();
                sink.await.unwrap_or_default()
            }
        }
    }
}
