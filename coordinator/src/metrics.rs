//! Prometheus metrics in the text exposition format: counters kept in memory, and the gauges the
//! caller reads from the store at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::QuotaKind;

/// The gauges of one scrape, as the store counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Specs per status name.
    pub specs: Vec<(String, u64)>,
    /// Bridged tasks per status name.
    pub tasks: Vec<(String, u64)>,
    /// Sandboxes starting or running.
    pub sandboxes_alive: u64,
    /// The replica that answers the scrape.
    pub replica: String,
}

/// Upper bounds of the ingest latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The in-memory counters.
#[derive(Debug, Default)]
pub struct Metrics {
    events_ingested: AtomicU64,
    batches: AtomicU64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`].
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_micros: AtomicU64,
    sandboxes_lost: AtomicU64,
    sandboxes_spawned: AtomicU64,
    /// Batches refused per quota, in the order of [`QuotaKind::ALL`].
    quota_refusals: [AtomicU64; QuotaKind::ALL.len()],
    /// Warm pools: this replica's idle standbys (as its pool service last counted them).
    pool_idle: AtomicU64,
    pool_claims: AtomicU64,
    pool_misses: AtomicU64,
    /// Standbys that came up (spawn to registration), and the time that took in total.
    refills: AtomicU64,
    refill_micros: AtomicU64,
}

impl Metrics {
    /// Records one ingested batch: how many new events it stored and how long it took.
    pub fn observe_ingest(&self, stored: usize, took: Duration) {
        self.events_ingested
            .fetch_add(u64::try_from(stored).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts a sandbox found lost.
    pub fn sandbox_lost(&self) {
        self.sandboxes_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a batch refused for a quota.
    pub fn quota_refused(&self, kind: QuotaKind) {
        if let Some(at) = QuotaKind::ALL.iter().position(|k| *k == kind) {
            self.quota_refusals[at].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a sandbox spawned.
    pub fn sandbox_spawned(&self) {
        self.sandboxes_spawned.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of idle standbys of this replica's pools.
    pub fn set_pool_idle(&self, idle: u64) {
        self.pool_idle.store(idle, Ordering::Relaxed);
    }

    /// The idle standbys of this process's pools, as last counted.
    pub fn pool_idle(&self) -> u64 {
        self.pool_idle.load(Ordering::Relaxed)
    }

    /// Counts a launch that took a standby from a warm pool.
    pub fn pool_claimed(&self) {
        self.pool_claims.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a launch that found its warm pool empty (and started cold).
    pub fn pool_missed(&self) {
        self.pool_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a standby that came up: the time from its spawn to its registration.
    pub fn observe_refill(&self, took: Duration) {
        self.refills.fetch_add(1, Ordering::Relaxed);
        self.refill_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The exposition text.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let Gauges {
            specs,
            tasks,
            sandboxes_alive: alive,
            replica,
        } = gauges;
        let _ = writeln!(out, "# HELP omoi_replica_info The replica that answers.");
        let _ = writeln!(out, "# TYPE omoi_replica_info gauge");
        let _ = writeln!(
            out,
            "omoi_replica_info{{replica=\"{}\"}} 1",
            label_value(replica)
        );
        let _ = writeln!(out, "# HELP omoi_specs Specs by status.");
        let _ = writeln!(out, "# TYPE omoi_specs gauge");
        for status in [
            "pending",
            "executing",
            "implementing",
            "completed",
            "failed",
            "cancelled",
        ] {
            let n = specs
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "omoi_specs{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP omoi_tasks Bridged tasks by status.");
        let _ = writeln!(out, "# TYPE omoi_tasks gauge");
        for status in [
            "pending",
            "ready",
            "running",
            "completed",
            "failed",
            "blocked",
        ] {
            let n = tasks
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "omoi_tasks{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP omoi_sandboxes_alive Sandboxes starting or running."
        );
        let _ = writeln!(out, "# TYPE omoi_sandboxes_alive gauge");
        let _ = writeln!(out, "omoi_sandboxes_alive {alive}");
        counter(
            &mut out,
            "omoi_sandboxes_spawned_total",
            "Sandboxes spawned by this process.",
            self.sandboxes_spawned.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "omoi_sandboxes_lost_total",
            "Sandboxes found lost by this process.",
            self.sandboxes_lost.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "omoi_events_ingested_total",
            "New events stored by this process.",
            self.events_ingested.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP omoi_pool_idle Standby sandboxes of this process's warm pools waiting for a claim."
        );
        let _ = writeln!(out, "# TYPE omoi_pool_idle gauge");
        let _ = writeln!(
            out,
            "omoi_pool_idle {}",
            self.pool_idle.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "omoi_pool_claims_total",
            "Launches of this process that took a warm standby sandbox.",
            self.pool_claims.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "omoi_pool_misses_total",
            "Launches of this process that found the warm pool empty and started cold.",
            self.pool_misses.load(Ordering::Relaxed),
        );
        let name = "omoi_pool_refill_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a standby sandbox's spawn to its registration."
        );
        let _ = writeln!(out, "# TYPE {name} summary");
        let refill_sum = self.refill_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {refill_sum}");
        let _ = writeln!(out, "{name}_count {}", self.refills.load(Ordering::Relaxed));
        let name = "omoi_quota_refusals_total";
        let _ = writeln!(
            out,
            "# HELP {name} Event batches refused because a sandbox reached a quota."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (kind, count) in QuotaKind::ALL.iter().zip(&self.quota_refusals) {
            let _ = writeln!(
                out,
                "{name}{{quota=\"{}\"}} {}",
                kind.as_str(),
                count.load(Ordering::Relaxed)
            );
        }
        let name = "omoi_ingest_seconds";
        let _ = writeln!(out, "# HELP {name} Time to store one event batch.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let batches = self.batches.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {batches}");
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {batches}");
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}
