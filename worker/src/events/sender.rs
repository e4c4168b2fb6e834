//! placeholder
use omoi_protocol::event::Envelope;
use tokio::sync::mpsc;
use super::{DeliveryReport, SinkSignals, spool::SharedSpool};
use crate::error::Result;
pub struct HttpSender;
impl HttpSender {
    pub fn new(_b: &str, _s: &str, _t: &str, _spool: SharedSpool) -> Result<Self> { Ok(HttpSender) }
    pub async fn run(self, _rx: mpsc::UnboundedReceiver<Envelope>, _s: SinkSignals) -> DeliveryReport { DeliveryReport::default() }
}
