//! Server-sent events, the `text/event-stream` format both model APIs stream in: an incremental
//! parser (feed it bytes as they arrive, take whole events out) and the reading of an HTTP body
//! with an idle limit, so that a stalled stream fails instead of hanging.

use std::time::Duration;

use super::transport::transport_error;
use crate::llm::LlmError;

/// One dispatched event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Buffers bytes until whole lines and whole events are available.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Adds bytes and returns the events they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut bytes = bytes;
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        self.buffer.extend_from_slice(bytes);
        let mut start = 0;
        let mut i = 0;
        while i < self.buffer.len() {
            let byte = self.buffer[i];
            if byte == b'\n' || byte == b'\r' {
                let line = String::from_utf8_lossy(&self.buffer[start..i]).into_owned();
                if byte == b'\r' {
                    match self.buffer.get(i + 1) {
                        Some(b'\n') => i += 1,
                        Some(_) => {}
                        None => self.after_cr = true,
                    }
                }
                if let Some(event) = self.line(&line) {
                    events.push(event);
                }
                start = i + 1;
            }
            i += 1;
        }
        self.buffer.drain(..start);
        events
    }

    /// Handles one line; a blank line dispatches the event gathered so far.
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent { event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            // `id` and `retry` matter to reconnecting browsers, not to one model call.
            _ => {}
        }
        None
    }
}

/// Whether a stream's reader wants more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The answer is complete; stop reading.
    Done,
}

/// Whether an answer's content type says it is an event stream.
pub fn is_event_stream(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The next piece of `response`'s body; `None` at its end. Fails with [`LlmError::Timeout`] when
/// nothing arrives within `idle`.
pub async fn next_chunk(
    response: &mut reqwest::Response,
    idle: Duration,
) -> Result<Option<Vec<u8>>, LlmError> {
    match tokio::time::timeout(idle, response.chunk()).await {
        Err(_) => Err(LlmError::Timeout(format!(
            "no data from the API for {} s",
            idle.as_secs_f64()
        ))),
        Ok(Err(error)) => Err(transport_error(&error)),
        Ok(Ok(chunk)) => Ok(chunk.map(|bytes| bytes.to_vec())),
    }
}

/// The whole body of `response`, with the idle limit between pieces.
pub async fn read_body(
    response: &mut reqwest::Response,
    idle: Duration,
) -> Result<String, LlmError> {
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(response, idle).await? {
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Feeds every event of `response` to `on_event` until it says [`Flow::Done`] (returned) or the
/// body ends ([`Flow::Continue`] returned: the caller decides whether the answer is whole).
pub async fn read_events<F>(
    response: &mut reqwest::Response,
    idle: Duration,
    mut on_event: F,
) -> Result<Flow, LlmError>
where
    F: FnMut(SseEvent) -> Result<Flow, LlmError>,
{
    let mut parser = SseParser::new();
    while let Some(chunk) = next_chunk(response, idle).await? {
        for event in parser.feed(&chunk) {
            if on_event(event)? == Flow::Done {
                return Ok(Flow::Done);
            }
        }
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: name.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn parses_named_events_split_across_chunks() {
        let mut parser = SseParser::new();
        let mut events = parser.feed(b"event: message_start\ndata: {\"a\"");
        assert_eq!(events, vec![]);
        events.extend(parser.feed(b":1}\n\n: a comment\n\nevent: ping\ndata: {}\n"));
        events.extend(parser.feed(b"\ndata: [DONE]\n\n"));
        assert_eq!(
            events,
            vec![
                event(Some("message_start"), "{\"a\":1}"),
                event(Some("ping"), "{}"),
                event(None, "[DONE]"),
            ]
        );
    }

    #[test]
    fn handles_crlf_cr_and_multi_line_data() {
        let mut parser = SseParser::new();
        let mut events = parser.feed(b"data: one\r\ndata:two\r");
        events.extend(parser.feed(b"\n\r\ndata: three\r\rid: 7\nretry: 10\nfield\n\n"));
        assert_eq!(events, vec![event(None, "one\ntwo"), event(None, "three")]);
    }

    #[test]
    fn keeps_multi_byte_characters_split_between_chunks() {
        let mut parser = SseParser::new();
        let text = "data: héllo\n\n".as_bytes();
        let mut events = parser.feed(&text[..8]);
        events.extend(parser.feed(&text[8..]));
        assert_eq!(events, vec![event(None, "héllo")]);
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert_eq!(parser.feed(b"event: message_stop\ndata: {}\n"), vec![]);
    }
}
