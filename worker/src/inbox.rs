//! Messages a user injects into a running agent: polled from the coordinator
//! (`GET /api/v1/sandboxes/{id}/messages?after=N`), reported as `agent.message_injected`, and
//! handed to the agent loop, which adds them to the conversation before its next model call.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omoi_protocol::api::InjectedMessage;
use omoi_protocol::event::{AgentMessageInjected, Event};
use tokio_util::sync::CancellationToken;

use crate::events::Emitter;

/// Cheap to clone; every clone shares one queue.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    queue: Arc<Mutex<VecDeque<String>>>,
}

/// Two handles are equal when they share one queue.
impl PartialEq for Inbox {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.queue, &other.queue)
    }
}

impl Inbox {
    pub fn push(&self, text: String) {
        self.lock().push_back(text);
    }

    /// Everything waiting, oldest first; the inbox is empty afterwards.
    pub fn drain(&self) -> Vec<String> {
        self.lock().drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        // A plain queue of strings cannot be left half-changed by a panic.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where and how often to poll.
#[derive(Debug, Clone)]
pub struct Poll {
    /// `{base}/api/v1/sandboxes/{id}/messages`.
    pub url: String,
    pub token: String,
    pub every: Duration,
    /// Remembers the last message id across restarts in this workspace.
    pub cursor_file: PathBuf,
}

/// Polls until `stop`; each new message is emitted and queued once.
pub async fn poll(config: Poll, inbox: Inbox, emitter: Emitter, stop: CancellationToken) {
    let client = match crate::tls::client_builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(%err, "cannot poll for injected messages");
            return;
        }
    };
    let mut after = std::fs::read_to_string(&config.cursor_file)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.every) => {}
        }
        let messages = match fetch(&client, &config, after).await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::debug!(%err, "polling for injected messages failed; trying again");
                continue;
            }
        };
        for message in messages {
            if message.id <= after {
                continue;
            }
            after = message.id;
            emitter.emit(Event::AgentMessageInjected(AgentMessageInjected {
                text: message.text.clone(),
            }));
            inbox.push(message.text);
        }
        if let Err(err) = std::fs::write(&config.cursor_file, after.to_string()) {
            tracing::warn!(%err, "cannot remember the last injected message");
        }
    }
}

async fn fetch(
    client: &reqwest::Client,
    config: &Poll,
    after: u64,
) -> Result<Vec<InjectedMessage>, String> {
    let response = client
        .get(format!("{}?after={after}", config.url))
        .bearer_auth(&config.token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the coordinator answered {}", response.status()));
    }
    let mut messages: Vec<InjectedMessage> = response.json().await.map_err(|e| e.to_string())?;
    messages.sort_by_key(|m| m.id);
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_empties_in_order() {
        let inbox = Inbox::default();
        let clone = inbox.clone();
        inbox.push("a".into());
        clone.push("b".into());
        assert_eq!(inbox.drain(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(clone.drain(), Vec::<String>::new());
    }
}
