//! Local-run delivery: one JSON event per line on stdout.

use omoi_protocol::event::Envelope;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{DeliveryReport, SinkSignals};

/// Writes every event as one line and flushes after each burst; returns once closing is
/// signalled and the channel is empty, or when every emitter is gone.
pub(super) async fn run(
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    signals: SinkSignals,
) -> DeliveryReport {
    let mut out = tokio::io::stdout();
    let mut report = DeliveryReport::default();
    let mut buf = Vec::with_capacity(4096);
    loop {
        let first = tokio::select! {
            biased;
            next = rx.recv() => next,
            _ = signals.closing.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else { return report };
        buf.clear();
        let mut next = Some(first);
        while let Some(envelope) = next {
            match serde_json::to_writer(&mut buf, &envelope) {
                Ok(()) => {
                    buf.push(b'\n');
                    report.delivered += 1;
                }
                Err(err) => tracing::error!(%err, seq = envelope.seq, "could not encode event"),
            }
            next = rx.try_recv().ok();
        }
        if let Err(err) = out.write_all(&buf).await.and(out.flush().await) {
            tracing::error!(%err, "stdout closed; events are no longer written");
            return report;
        }
    }
}
