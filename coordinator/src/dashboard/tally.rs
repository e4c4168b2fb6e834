//! What a spec's events add up to for its page: each phase attempt's evaluation (score, criteria,
//! feedback), and tokens and cost per phase and per task. Pure, one pass over the events.

use std::collections::{BTreeMap, HashMap};

use omoi_protocol::event::{AgentUsage, SpecEvalResult, SpecPhaseStarted, Usage};
use omoi_protocol::phase::Phase;

use crate::model::StreamEvent;

/// A spec's evaluations and usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Each evaluation in stream order, per phase.
    pub evaluations: BTreeMap<Phase, Vec<SpecEvalResult>>,
    /// Tokens and cost per phase (model calls of spec sandboxes).
    pub per_phase: BTreeMap<Phase, Usage>,
    /// Tokens and cost per task (coordinator task id).
    pub per_task: HashMap<String, Usage>,
    /// Everything.
    pub total: Usage,
    /// Events whose data did not read as their type (counted, not shown).
    pub unreadable: usize,
}

fn add(to: &mut Usage, call: &Usage) {
    to.input_tokens = to.input_tokens.saturating_add(call.input_tokens);
    to.output_tokens = to.output_tokens.saturating_add(call.output_tokens);
    to.cost_usd += call.cost_usd;
}

/// Adds up `events` (any kinds; the others are passed over).
pub fn tally(events: &[StreamEvent]) -> Tally {
    let mut tally = Tally::default();
    // The phase each spec sandbox is in.
    let mut phase_of: HashMap<&str, Phase> = HashMap::new();
    for e in events {
        let event = &e.event;
        match event.kind.as_str() {
            "spec.phase_started" => {
                match serde_json::from_value::<SpecPhaseStarted>(event.data.clone()) {
                    Ok(started) => {
                        phase_of.insert(event.sandbox_id.as_str(), started.phase);
                    }
                    Err(_) => tally.unreadable += 1,
                }
            }
            "spec.eval_result" => {
                match serde_json::from_value::<SpecEvalResult>(event.data.clone()) {
                    Ok(result) => tally
                        .evaluations
                        .entry(result.evaluation.phase)
                        .or_default()
                        .push(result),
                    Err(_) => tally.unreadable += 1,
                }
            }
            "agent.usage" => match serde_json::from_value::<AgentUsage>(event.data.clone()) {
                Ok(usage) => {
                    add(&mut tally.total, &usage.call);
                    if let Some(task) = &event.task_id {
                        add(tally.per_task.entry(task.clone()).or_default(), &usage.call);
                    } else if let Some(phase) = phase_of.get(event.sandbox_id.as_str()) {
                        add(tally.per_phase.entry(*phase).or_default(), &usage.call);
                    }
                }
                Err(_) => tally.unreadable += 1,
            },
            _ => {}
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use omoi_protocol::event::RawEvent;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn event(
        cursor: i64,
        sandbox: &str,
        task: Option<&str>,
        kind: &str,
        data: serde_json::Value,
    ) -> StreamEvent {
        StreamEvent {
            cursor,
            event: RawEvent {
                v: 1,
                sandbox_id: sandbox.into(),
                seq: u64::try_from(cursor).unwrap(),
                at: Utc::now(),
                spec_id: Some("s".into()),
                task_id: task.map(str::to_string),
                kind: kind.into(),
                data,
            },
        }
    }

    fn usage(input: u64, cost: f64) -> serde_json::Value {
        let call = json!({"input_tokens": input, "output_tokens": 1, "cost_usd": cost});
        json!({"call": call, "total": call})
    }

    #[test]
    fn usage_is_added_per_phase_of_its_sandbox_and_per_task() {
        let events = [
            event(
                1,
                "a",
                None,
                "spec.phase_started",
                json!({"phase": "explore", "attempt": 1}),
            ),
            event(2, "a", None, "agent.usage", usage(10, 0.5)),
            event(3, "b", Some("t1"), "agent.usage", usage(5, 0.25)),
            event(
                4,
                "a",
                None,
                "spec.phase_started",
                json!({"phase": "design", "attempt": 1}),
            ),
            event(5, "a", None, "agent.usage", usage(7, 0.25)),
            event(6, "a", None, "agent.usage", json!({"call": "nonsense"})),
            event(7, "a", None, "agent.message", json!({"text": "hi"})),
        ];
        let tally = tally(&events);
        assert_eq!(tally.per_phase[&Phase::Explore].input_tokens, 10);
        assert_eq!(tally.per_phase[&Phase::Design].input_tokens, 7);
        assert_eq!(tally.per_task["t1"].cost_usd, 0.25);
        assert_eq!(tally.total.input_tokens, 22);
        assert_eq!(tally.total.cost_usd, 1.0);
        assert_eq!(tally.unreadable, 1);
    }
}
