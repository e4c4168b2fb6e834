//! Reads the usage of one model call out of the answer as it streams past the proxy: the
//! Anthropic Messages events (`message_start`, `message_delta`) or the OpenAI Responses events
//! (`response.completed` and its kin), or the same fields of a whole JSON answer.

use serde_json::Value;

use crate::llm::http::sse::SseParser;
use crate::llm::pricing::{self, Price};

/// The API a proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Anthropic Messages (`POST /v1/messages`), for Claude Code.
    Anthropic,
    /// OpenAI Responses (`POST /v1/responses`), for Codex.
    OpenAiResponses,
}

/// What one call used, as the API reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallUsage {
    pub model: Option<String>,
    /// Every input token, cached or not.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache (part of `input_tokens`).
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (part of `input_tokens`; Anthropic only).
    pub cache_write_tokens: u64,
}

/// Cache reads cost a tenth of the input price, cache writes a quarter more (both APIs' list
/// terms for the models omoi prices).
const CACHE_READ_FACTOR: f64 = 0.1;
const CACHE_WRITE_FACTOR: f64 = 1.25;

impl CallUsage {
    /// The estimated cost in US dollars, at `price` or the list price of the model.
    pub fn cost(&self, price: Option<Price>) -> f64 {
        let price = price.unwrap_or_else(|| pricing::price_of(self.model.as_deref().unwrap_or("")));
        let plain = self
            .input_tokens
            .saturating_sub(self.cache_read_tokens + self.cache_write_tokens);
        let input = plain as f64
            + self.cache_read_tokens as f64 * CACHE_READ_FACTOR
            + self.cache_write_tokens as f64 * CACHE_WRITE_FACTOR;
        (input * price.input_per_mtok + self.output_tokens as f64 * price.output_per_mtok)
            / 1_000_000.0
    }
}

/// Watches one answer's bytes.
#[derive(Debug)]
pub struct Meter {
    wire: Wire,
    /// `Some` for an event stream, `None` for a JSON answer (kept whole in `body`).
    sse: Option<SseParser>,
    body: Vec<u8>,
    usage: CallUsage,
    seen: bool,
}

/// The most of a JSON answer kept to read its usage.
const MAX_JSON_BODY: usize = 8 << 20;

impl Meter {
    pub fn new(wire: Wire, event_stream: bool) -> Self {
        Meter {
            wire,
            sse: event_stream.then(SseParser::new),
            body: Vec::new(),
            usage: CallUsage::default(),
            seen: false,
        }
    }

    /// Takes the next piece of the answer.
    pub fn feed(&mut self, bytes: &[u8]) {
        match &mut self.sse {
            Some(parser) => {
                for event in parser.feed(bytes) {
                    if let Ok(data) = serde_json::from_str::<Value>(&event.data) {
                        self.event(&data);
                    }
                }
            }
            None if self.body.len() + bytes.len() <= MAX_JSON_BODY => {
                self.body.extend_from_slice(bytes)
            }
            None => {}
        }
    }

    /// The usage the answer reported, if it reported any.
    pub fn finish(mut self) -> Option<CallUsage> {
        if self.sse.is_none() {
            if let Ok(body) = serde_json::from_slice::<Value>(&self.body) {
                self.whole(&body);
            }
        }
        self.seen.then_some(self.usage)
    }

    fn event(&mut self, data: &Value) {
        match (self.wire, data["type"].as_str().unwrap_or_default()) {
            (Wire::Anthropic, "message_start") => {
                let message = &data["message"];
                self.model_from(&message["model"]);
                self.anthropic_usage(&message["usage"]);
            }
            (Wire::Anthropic, "message_delta") => self.anthropic_usage(&data["usage"]),
            (
                Wire::OpenAiResponses,
                "response.completed" | "response.incomplete" | "response.failed",
            ) => {
                let response = &data["response"];
                self.model_from(&response["model"]);
                self.openai_usage(&response["usage"]);
            }
            _ => {}
        }
    }

    fn whole(&mut self, body: &Value) {
        self.model_from(&body["model"]);
        match self.wire {
            Wire::Anthropic => self.anthropic_usage(&body["usage"]),
            Wire::OpenAiResponses => self.openai_usage(&body["usage"]),
        }
    }

    fn model_from(&mut self, model: &Value) {
        if let Some(model) = model.as_str().filter(|m| !m.is_empty()) {
            self.usage.model = Some(model.to_string());
        }
    }

    /// Anthropic counts uncached input, cache writes and cache reads apart; a later event's
    /// counts are running totals, so the largest value seen is the call's.
    fn anthropic_usage(&mut self, usage: &Value) {
        if !usage.is_object() {
            return;
        }
        self.seen = true;
        let count = |name: &str| usage[name].as_u64();
        let u = &mut self.usage;
        if let Some(write) = count("cache_creation_input_tokens") {
            u.cache_write_tokens = u.cache_write_tokens.max(write);
        }
        if let Some(read) = count("cache_read_input_tokens") {
            u.cache_read_tokens = u.cache_read_tokens.max(read);
        }
        if let Some(input) = count("input_tokens") {
            u.input_tokens = u
                .input_tokens
                .max(input + u.cache_write_tokens + u.cache_read_tokens);
        }
        if let Some(output) = count("output_tokens") {
            u.output_tokens = u.output_tokens.max(output);
        }
    }

    fn openai_usage(&mut self, usage: &Value) {
        if !usage.is_object() {
            return;
        }
        self.seen = true;
        let u = &mut self.usage;
        u.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
        u.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
        u.cache_read_tokens = usage["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    /// Feeds `text` in pieces of `size` bytes.
    fn metered(wire: Wire, event_stream: bool, text: &str, size: usize) -> Option<CallUsage> {
        let mut meter = Meter::new(wire, event_stream);
        for piece in text.as_bytes().chunks(size) {
            meter.feed(piece);
        }
        meter.finish()
    }

    #[test]
    fn anthropic_stream_with_cache_counts() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",",
            "\"usage\":{\"input_tokens\":100,\"cache_creation_input_tokens\":1000,\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":250}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let usage = metered(Wire::Anthropic, true, stream, 7).unwrap();
        assert_eq!(
            usage,
            CallUsage {
                model: Some("claude-sonnet-4-5".to_string()),
                input_tokens: 5100,
                output_tokens: 250,
                cache_read_tokens: 4000,
                cache_write_tokens: 1000,
            }
        );
        // $3 / $15 per million: 100 + 1000 × 1.25 + 4000 × 0.1 = 1750 input-token equivalents.
        let cost = usage.cost(None);
        assert!(
            (cost - (1750.0 * 3.0 + 250.0 * 15.0) / 1e6).abs() < 1e-12,
            "{cost}"
        );
    }

    #[test]
    fn openai_responses_stream() {
        let stream = concat!(
            "event: response.created\n",
            "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"usage\":null}}\n\n",
            "event: response.completed\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",",
            "\"usage\":{\"input_tokens\":2000,\"input_tokens_details\":{\"cached_tokens\":1500},\"output_tokens\":40,",
            "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":2040}}}\n\n",
        );
        let usage = metered(Wire::OpenAiResponses, true, stream, 11).unwrap();
        assert_eq!(
            usage,
            CallUsage {
                model: Some("gpt-5".to_string()),
                input_tokens: 2000,
                output_tokens: 40,
                cache_read_tokens: 1500,
                cache_write_tokens: 0,
            }
        );
        let cost = usage.cost(Some(Price::new(1.0, 10.0)));
        assert!((cost - (650.0 + 400.0) / 1e6).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn a_whole_json_answer() {
        let body = r#"{"id":"msg_1","type":"message","model":"claude-haiku-4-5","content":[],"usage":{"input_tokens":12,"output_tokens":3}}"#;
        assert_eq!(
            metered(Wire::Anthropic, false, body, 5),
            Some(CallUsage {
                model: Some("claude-haiku-4-5".to_string()),
                input_tokens: 12,
                output_tokens: 3,
                ..CallUsage::default()
            })
        );
    }

    #[test]
    fn an_answer_without_usage_reports_none() {
        assert_eq!(metered(Wire::Anthropic, false, "not json", 3), None);
        let errors = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n";
        assert_eq!(metered(Wire::Anthropic, true, errors, 9), None);
        assert_eq!(
            metered(Wire::OpenAiResponses, true, "data: {broken\n\n", 4),
            None
        );
    }
}
