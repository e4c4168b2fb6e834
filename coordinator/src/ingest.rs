//! What an ingested event means for the coordinator's state: validation of a batch against its
//! sandbox, and the [`Effect`]s each event has on its spec and sandbox.
//!
//! Pure functions; the store applies the effects in seq order inside the ingest transaction.

use omoi_protocol::artifact::FinalSpec;
use omoi_protocol::event::{Event, RawEvent};
use omoi_protocol::phase::Phase;

use crate::error::{Error, QuotaKind, Result};
use crate::model::Sandbox;

/// The most events one batch may carry.
pub const MAX_BATCH: usize = 1000;

/// What one sandbox may store: the limits of `omoi serve --max-seq-ahead`, `--max-held-events`
/// and `--max-sandbox-bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// How far past the acknowledged seq an event's seq may be.
    pub seq_window: u64,
    /// How many events may be held back, waiting for a gap to fill.
    pub held_events: u64,
    /// How many bytes of event data a sandbox may store in all.
    pub stored_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            seq_window: 10_000,
            held_events: 2_000,
            stored_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Quotas {
    /// Refuses an event whose seq is further than the window past `acked`.
    pub fn check_seq(&self, acked: u64, seq: u64) -> Result<()> {
        if seq.saturating_sub(acked) > self.seq_window {
            return Err(Error::Quota {
                kind: QuotaKind::SeqWindow,
                message: format!(
                    "event seq {seq} is more than {} past the acknowledged seq {acked}",
                    self.seq_window
                ),
            });
        }
        Ok(())
    }

    /// Refuses a batch that would leave more than the limit of events held back.
    pub fn check_held(&self, held: u64) -> Result<()> {
        if held > self.held_events {
            return Err(Error::Quota {
                kind: QuotaKind::HeldEvents,
                message: format!(
                    "{held} events would wait for a gap in the seq; at most {} may",
                    self.held_events
                ),
            });
        }
        Ok(())
    }

    /// Refuses a batch that would take the sandbox's stored event data past the limit.
    pub fn check_bytes(&self, stored: u64, adding: u64) -> Result<()> {
        let total = stored.saturating_add(adding);
        if total > self.stored_bytes {
            return Err(Error::Quota {
                kind: QuotaKind::StoredBytes,
                message: format!(
                    "the sandbox's events would take {total} bytes; at most {} may be stored",
                    self.stored_bytes
                ),
            });
        }
        Ok(())
    }
}

/// What one event changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The worker runs: the sandbox is `running`.
    AgentStarted,
    /// A phase attempt began: the spec's current phase.
    PhaseStarted { phase: Phase, attempt: u32 },
    /// An attempt was scored.
    PhaseScored {
        phase: Phase,
        attempt: u32,
        score: f64,
    },
    /// A phase passed: its output is the checkpoint.
    PhaseCompleted {
        phase: Phase,
        score: f64,
        attempts: u32,
        duration_ms: u64,
        /// The `PhaseOutput` as JSON.
        output: String,
    },
    /// A phase failed its last attempt.
    PhaseFailed { phase: Phase, score: Option<f64> },
    /// The final spec arrived: the spec is implementing, bridged into a ticket and tasks.
    SpecCompleted { final_spec: Box<FinalSpec> },
    /// The spec failed.
    SpecFailed { reason: String },
    /// A task sandbox committed (again, after a rebase): the task's latest commit.
    TaskCommitted { sha: String },
    /// The task's commit is on the spec branch: the task completed.
    TaskCompleted { sha: String },
    /// The task's attempt failed.
    TaskFailed { reason: String },
    /// The worker ended (a terminal event).
    AgentEnded {
        /// `agent.completed` or `agent.failed`.
        terminal: &'static str,
        success: bool,
        stopped_after: Option<Phase>,
        reason: Option<String>,
    },
}

/// Checks a batch against the sandbox that sent it: size, envelope version, sandbox and spec ids,
/// seq numbers. The first problem is the error (422).
pub fn validate_batch(sandbox: &Sandbox, events: &[RawEvent]) -> Result<()> {
    if events.len() > MAX_BATCH {
        return Err(Error::Invalid(format!(
            "a batch carries at most {MAX_BATCH} events, this one {}",
            events.len()
        )));
    }
    for event in events {
        if event.v == 0 {
            return Err(Error::Invalid(format!(
                "event seq {}: envelope version 0 does not exist",
                event.seq
            )));
        }
        if event.seq == 0 {
            return Err(Error::Invalid("event seq starts at 1, got 0".into()));
        }
        if i64::try_from(event.seq).is_err() {
            return Err(Error::Invalid(format!(
                "event seq {} is too large",
                event.seq
            )));
        }
        if event.sandbox_id != sandbox.id {
            return Err(Error::Invalid(format!(
                "event seq {} names sandbox {:?}, not {:?}",
                event.seq, event.sandbox_id, sandbox.id
            )));
        }
        if let Some(spec_id) = &event.spec_id {
            if sandbox.spec_id.as_deref() != Some(spec_id.as_str()) {
                return Err(Error::Invalid(format!(
                    "event seq {} names spec {spec_id:?}, which this sandbox does not run",
                    event.seq
                )));
            }
        }
        if event.kind.trim().is_empty() {
            return Err(Error::Invalid(format!(
                "event seq {} has no type",
                event.seq
            )));
        }
    }
    Ok(())
}

/// The high-volume types that never change state: their data is not decoded at all (a test
/// checks that decoding them yields no effect either).
const STATELESS_TYPES: [&str; 6] = [
    "agent.message",
    "agent.tool_use",
    "agent.tool_result",
    "agent.usage",
    "agent.heartbeat",
    "agent.file_edited",
];

/// The effects of one event; none for unknown types, types without state, or data that does not
/// fit its type (those are stored as they are all the same).
pub fn effects(event: &RawEvent) -> Vec<Effect> {
    if STATELESS_TYPES.contains(&event.kind.as_str()) {
        return Vec::new();
    }
    decoded_effects(event)
}

/// The effects of one event, from its decoded data.
fn decoded_effects(event: &RawEvent) -> Vec<Effect> {
    let Ok(typed) = event.typed() else {
        return Vec::new();
    };
    match typed {
        Event::AgentStarted(_) => vec![Effect::AgentStarted],
        Event::SpecPhaseStarted(e) => vec![Effect::PhaseStarted {
            phase: e.phase,
            attempt: e.attempt,
        }],
        Event::SpecEvalResult(e) => vec![Effect::PhaseScored {
            phase: e.evaluation.phase,
            attempt: e.attempt,
            score: e.evaluation.score,
        }],
        Event::SpecPhaseCompleted(e) => match serde_json::to_string(&e.output) {
            Ok(output) => vec![Effect::PhaseCompleted {
                phase: e.phase,
                score: e.score,
                attempts: e.attempts,
                duration_ms: e.duration_ms,
                output,
            }],
            Err(_) => Vec::new(),
        },
        Event::SpecPhaseFailed(e) => vec![Effect::PhaseFailed {
            phase: e.phase,
            score: e.last_score,
        }],
        Event::SpecExecutionCompleted(final_spec) => vec![Effect::SpecCompleted { final_spec }],
        Event::SpecExecutionFailed(e) => vec![Effect::SpecFailed {
            reason: format!("{} failed: {}", e.phase, e.reason),
        }],
        Event::AgentCompleted(e) => vec![Effect::AgentEnded {
            terminal: "agent.completed",
            success: e.success,
            stopped_after: e.stopped_after,
            reason: (!e.success).then(|| "the worker completed without success".to_string()),
        }],
        Event::AgentFailed(e) => vec![Effect::AgentEnded {
            terminal: "agent.failed",
            success: false,
            stopped_after: None,
            reason: Some(e.reason),
        }],
        Event::AgentHeartbeat(_)
        | Event::AgentMessage(_)
        | Event::AgentToolUse(_)
        | Event::AgentToolResult(_)
        | Event::AgentFileEdited(_)
        | Event::AgentUsage(_)
        | Event::AgentMessageInjected(_)
        | Event::SpecExecutionStarted(_)
        | Event::SpecPhaseRetry(_)
        | Event::TaskStarted(_)
        | Event::TaskValidation(_) => Vec::new(),
        Event::TaskCommitted(e) => vec![Effect::TaskCommitted { sha: e.sha }],
        Event::TaskCompleted(e) => vec![Effect::TaskCompleted { sha: e.sha }],
        Event::TaskFailed(e) => vec![Effect::TaskFailed { reason: e.reason }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use crate::model::SandboxStatus;

    fn raw(kind: &str, data: serde_json::Value) -> RawEvent {
        RawEvent {
            v: 1,
            sandbox_id: "sb".into(),
            seq: 1,
            at: Utc::now(),
            spec_id: Some("spec".into()),
            task_id: None,
            kind: kind.into(),
            data,
        }
    }

    fn sandbox() -> Sandbox {
        Sandbox {
            id: "sb".into(),
            spec_id: Some("spec".into()),
            task_id: None,
            provider: "local".into(),
            handle: None,
            status: SandboxStatus::Running,
            start_phase: Some(Phase::Explore),
            acked_seq: 0,
            terminal: None,
            reason: None,
            created_at: Utc::now(),
            last_seen_at: Utc::now(),
            ended_at: None,
        }
    }

    #[test]
    fn phase_events_become_effects_and_unknown_types_none() {
        assert_eq!(
            effects(&raw(
                "spec.phase_started",
                json!({"phase": "design", "attempt": 2})
            )),
            vec![Effect::PhaseStarted {
                phase: Phase::Design,
                attempt: 2
            }]
        );
        assert_eq!(
            effects(&raw(
                "agent.failed",
                json!({"kind": "gate", "reason": "design did not pass"})
            )),
            vec![Effect::AgentEnded {
                terminal: "agent.failed",
                success: false,
                stopped_after: None,
                reason: Some("design did not pass".into()),
            }]
        );
        assert_eq!(effects(&raw("agent.dreamed", json!({"x": 1}))), vec![]);
        assert_eq!(
            effects(&raw("spec.phase_started", json!({"phase": 7}))),
            vec![]
        );
    }

    #[test]
    fn the_types_skipped_undecoded_have_no_effects_when_decoded() {
        let samples = [
            raw("agent.message", json!({"text": "hi"})),
            raw(
                "agent.tool_use",
                json!({"tool": "read_file", "call_id": "c1", "input_summary": "{}"}),
            ),
            raw(
                "agent.tool_result",
                json!({"call_id": "c1", "ok": true, "output_summary": "ok"}),
            ),
            raw(
                "agent.usage",
                json!({"call": {"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.1},
                       "total": {"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.1}}),
            ),
            raw(
                "agent.heartbeat",
                json!({"counters": {"turns": 1, "tool_calls": 2,
                       "usage": {"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.1}}}),
            ),
            raw(
                "agent.file_edited",
                json!({"path": "a.rs", "lines_added": 1, "lines_removed": 0}),
            ),
        ];
        let kinds: Vec<&str> = samples.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, STATELESS_TYPES);
        for sample in &samples {
            assert!(sample.typed().is_ok(), "{} does not decode", sample.kind);
            assert_eq!(decoded_effects(sample), vec![], "{}", sample.kind);
        }
    }

    #[test]
    fn a_batch_for_another_sandbox_or_spec_or_seq_zero_is_refused() {
        let ok = raw("agent.message", json!({"text": "hi"}));
        assert!(validate_batch(&sandbox(), std::slice::from_ref(&ok)).is_ok());

        let other_sandbox = RawEvent {
            sandbox_id: "other".into(),
            ..ok.clone()
        };
        assert_eq!(
            validate_batch(&sandbox(), &[other_sandbox])
                .unwrap_err()
                .to_string(),
            "event seq 1 names sandbox \"other\", not \"sb\""
        );
        let other_spec = RawEvent {
            spec_id: Some("x".into()),
            ..ok.clone()
        };
        assert_eq!(
            validate_batch(&sandbox(), &[other_spec])
                .unwrap_err()
                .to_string(),
            "event seq 1 names spec \"x\", which this sandbox does not run"
        );
        let zero = RawEvent {
            seq: 0,
            ..ok.clone()
        };
        assert_eq!(
            validate_batch(&sandbox(), &[zero]).unwrap_err().to_string(),
            "event seq starts at 1, got 0"
        );
        let too_many = vec![ok; MAX_BATCH + 1];
        assert!(validate_batch(&sandbox(), &too_many).is_err());
    }
}
