//! Storing one event batch of a sandbox in few statements: multi-row inserts, and stream cursors
//! handed out for a whole run of seqs at once.
//!
//! The usual batch continues its sandbox's acknowledged seq without gaps and nothing waits in the
//! store: its events are inserted already released (cursor set), one write per event. Anything
//! else (a gap, a resend, a batch that fills a gap) goes the general way: insert unreleased, then
//! release the contiguous run after the acknowledged seq in one `UPDATE`.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use omoi_protocol::event::RawEvent;
use sqlx::{Any, Row, Transaction};

use super::events::{EVENT_COLUMNS, event_from_row};
use super::{Store, to_i64, to_json, to_u64};
use crate::error::{Error, Result, corrupt};
use crate::ingest::Quotas;
use crate::model::{Sandbox, StreamEvent};

/// What storing a batch did.
#[derive(Debug)]
pub(super) struct StoredBatch {
    /// How many events of the batch were new.
    pub stored: usize,
    /// The events released into the stream, in seq order.
    pub released: Vec<StreamEvent>,
    /// The highest seq such that every seq from 1 to it is stored.
    pub acked_seq: u64,
    /// The bytes the new events add to the sandbox's stored total (written by the caller's one
    /// update of the sandbox row).
    pub added_bytes: u64,
}

/// The most rows of one `INSERT` (10 parameters each). A batch goes in chunks of 64, 32, 16 …
/// rows, so a few statement shapes serve every batch size and stay prepared.
const INSERT_CHUNK: usize = 64;

/// A worker's full batch (its sender sends at most this many events at once) goes in one
/// statement of its own shape.
const FULL_BATCH: usize = 100;

/// One event of a batch, its text columns encoded before the transaction starts.
#[derive(Debug)]
pub(super) struct EventRow<'a> {
    event: &'a RawEvent,
    at: String,
    data: String,
}

/// The first copy of each seq in a batch, in seq order, encoded for its row.
pub(super) fn encode_batch(events: &[RawEvent]) -> Result<Vec<EventRow<'_>>> {
    let mut first_copies: HashMap<u64, &RawEvent> = HashMap::with_capacity(events.len());
    for event in events {
        first_copies.entry(event.seq).or_insert(event);
    }
    let mut rows = first_copies
        .into_values()
        .map(|event| {
            Ok(EventRow {
                event,
                at: event.at.to_rfc3339(),
                data: to_json(&event.data)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    rows.sort_unstable_by_key(|row| row.event.seq);
    Ok(rows)
}

/// A batch as it arrives: its encoded rows and the quotas of its sandbox.
#[derive(Clone, Copy)]
pub(super) struct Incoming<'a> {
    pub rows: &'a [EventRow<'a>],
    pub quotas: &'a Quotas,
}

/// What a batch that took the general way stored: the new seqs, and how many events still wait
/// for a gap to fill.
struct Unreleased {
    batch: StoredBatch,
    fresh: HashSet<u64>,
    held: u64,
}

/// The bytes a row's data counts against its sandbox's quota.
fn row_bytes(row: &EventRow<'_>) -> u64 {
    u64::try_from(row.data.len()).unwrap_or(u64::MAX)
}

impl Store {
    /// Stores the encoded batch of `sandbox` and releases what became contiguous. Seqs already
    /// stored are left as they are (the first copy wins).
    pub(super) async fn store_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        sandbox: &Sandbox,
        incoming: Incoming<'_>,
        now: i64,
    ) -> Result<StoredBatch> {
        let Incoming { rows, quotas } = incoming;
        let state = sqlx::query(
            "SELECT acked_seq, stored_bytes,
                    (SELECT MIN(seq) FROM events
                     WHERE sandbox_id = $1 AND seq > sandboxes.acked_seq) AS waiting
             FROM sandboxes WHERE id = $1",
        )
        .bind(&sandbox.id)
        .fetch_one(&mut **tx)
        .await?;
        let acked = to_u64(state.try_get("acked_seq")?, "acked_seq")?;
        // The lowest stored seq past the acknowledged one, if any waits for a gap to fill.
        let waiting = state.try_get::<Option<i64>, _>("waiting")?.is_some();
        let stored_bytes = to_u64(state.try_get("stored_bytes")?, "stored_bytes")?;
        let batch: Vec<&EventRow> = rows.iter().filter(|r| r.event.seq > acked).collect();
        if batch.is_empty() {
            return Ok(StoredBatch {
                stored: 0,
                released: Vec::new(),
                acked_seq: acked,
                added_bytes: 0,
            });
        }
        if let Some(last) = batch.last() {
            quotas.check_seq(acked, last.event.seq)?;
        }
        let continues = batch
            .iter()
            .zip(acked + 1..)
            .all(|(row, seq)| row.event.seq == seq);
        let (stored, adding) = if continues && !waiting {
            let adding = batch.iter().map(|row| row_bytes(row)).sum::<u64>();
            quotas.check_bytes(stored_bytes, adding)?;
            (
                self.store_released(tx, sandbox, &batch, acked, now).await?,
                adding,
            )
        } else {
            let stored = self
                .store_unreleased(tx, sandbox, &batch, acked, now)
                .await?;
            quotas.check_held(stored.held)?;
            let adding = batch
                .iter()
                .filter(|row| stored.fresh.contains(&row.event.seq))
                .map(|row| row_bytes(row))
                .sum::<u64>();
            quotas.check_bytes(stored_bytes, adding)?;
            (stored.batch, adding)
        };
        // A refused batch returns above and its transaction rolls back: nothing of it stays.
        Ok(StoredBatch {
            added_bytes: adding,
            ..stored
        })
    }

    /// The usual batch: `acked + 1 …` without gaps, nothing waiting. Inserted with its cursors.
    async fn store_released(
        &self,
        tx: &mut Transaction<'static, Any>,
        sandbox: &Sandbox,
        batch: &[&EventRow<'_>],
        acked: u64,
        now: i64,
    ) -> Result<StoredBatch> {
        let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        let mut cursors = sqlx::query(self.backend.allocate_cursors_sql())
            .bind(count)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>("cursor"))
            .collect::<std::result::Result<Vec<i64>, _>>()?;
        cursors.sort_unstable();
        if cursors.len() != batch.len() {
            return Err(Error::Internal(format!(
                "asked for {count} cursors, got {}",
                cursors.len()
            )));
        }
        let inserted = self
            .insert_released(tx, sandbox, batch, &cursors, now)
            .await?;
        if inserted != batch.len() as u64 {
            // Only another replica storing the same seqs at this moment gets here; the sender
            // retries and the next attempt takes the general way.
            return Err(Error::Conflict(format!(
                "events of sandbox {} were stored concurrently; send the batch again",
                sandbox.id
            )));
        }
        let released = batch
            .iter()
            .zip(cursors)
            .map(|(row, cursor)| StreamEvent {
                cursor,
                event: stored_copy(sandbox, row.event),
            })
            .collect();
        Ok(StoredBatch {
            stored: batch.len(),
            released,
            acked_seq: acked + batch.len() as u64,
            added_bytes: 0,
        })
    }

    /// Any other batch: inserted unreleased, then the contiguous run after `acked` is released.
    async fn store_unreleased(
        &self,
        tx: &mut Transaction<'static, Any>,
        sandbox: &Sandbox,
        batch: &[&EventRow<'_>],
        acked: u64,
        now: i64,
    ) -> Result<Unreleased> {
        let fresh = self.insert(tx, sandbox, batch, now).await?;
        let waiting =
            sqlx::query("SELECT seq FROM events WHERE sandbox_id = $1 AND seq > $2 ORDER BY seq")
                .bind(&sandbox.id)
                .bind(to_i64(acked, "seq")?)
                .fetch_all(&mut **tx)
                .await?;
        let mut last = acked;
        for row in &waiting {
            if to_u64(row.try_get("seq")?, "seq")? != last + 1 {
                break;
            }
            last += 1;
        }
        let mut released = Vec::new();
        if last > acked {
            let cursors = self.release(tx, &sandbox.id, acked + 1, last).await?;
            let by_seq: HashMap<u64, &RawEvent> = batch
                .iter()
                .filter(|r| fresh.contains(&r.event.seq))
                .map(|r| (r.event.seq, r.event))
                .collect();
            let mut waited = if cursors.iter().all(|(seq, _)| by_seq.contains_key(seq)) {
                HashMap::new()
            } else {
                stored_events(tx, &sandbox.id, acked + 1, last).await?
            };
            for (seq, cursor) in cursors {
                let event = match by_seq.get(&seq) {
                    Some(event) => stored_copy(sandbox, event),
                    None => waited
                        .remove(&seq)
                        .ok_or_else(|| corrupt("events", format!("seq {seq} vanished")))?,
                };
                released.push(StreamEvent { cursor, event });
            }
        }
        let held = (waiting.len() as u64).saturating_sub(last - acked);
        Ok(Unreleased {
            batch: StoredBatch {
                stored: fresh.len(),
                released,
                acked_seq: last,
                added_bytes: 0,
            },
            fresh,
            held,
        })
    }

    /// Gives the stored events `first..=last` of a sandbox their cursors (one statement) and
    /// answers `(seq, cursor)` in seq order.
    async fn release(
        &self,
        tx: &mut Transaction<'static, Any>,
        sandbox_id: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, i64)>> {
        let rows = sqlx::query(self.backend.release_sql())
            .bind(sandbox_id)
            .bind(to_i64(first, "seq")?)
            .bind(to_i64(last, "seq")?)
            .fetch_all(&mut **tx)
            .await?;
        let mut cursors = rows
            .iter()
            .map(|row| Ok((to_u64(row.try_get("seq")?, "seq")?, row.try_get("cursor")?)))
            .collect::<Result<Vec<(u64, i64)>>>()?;
        cursors.sort_unstable();
        let in_order = cursors.windows(2).all(|w| w[0].1 < w[1].1);
        let expected = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
        if cursors.len() != expected || !in_order {
            return Err(Error::Internal(format!(
                "releasing seqs {first}..={last} of sandbox {sandbox_id} gave cursors {cursors:?}"
            )));
        }
        Ok(cursors)
    }

    /// Inserts the events unreleased, in as few statements as the batch size allows; seqs
    /// already stored are skipped. Answers the seqs that were new.
    async fn insert(
        &self,
        tx: &mut Transaction<'static, Any>,
        sandbox: &Sandbox,
        batch: &[&EventRow<'_>],
        now: i64,
    ) -> Result<HashSet<u64>> {
        let numbered = self.backend.numbered_parameters();
        let mut fresh = HashSet::with_capacity(batch.len());
        let mut done = 0;
        while done < batch.len() {
            let size = chunk_size(batch.len() - done);
            let mut query = sqlx::query(insert_sql(numbered, false, size));
            for row in &batch[done..done + size] {
                query = bind_row(query, sandbox, row, now)?;
            }
            for row in query.fetch_all(&mut **tx).await? {
                fresh.insert(to_u64(row.try_get("seq")?, "seq")?);
            }
            done += size;
        }
        Ok(fresh)
    }

    /// Inserts the events released, with their cursors; answers how many were new.
    async fn insert_released(
        &self,
        tx: &mut Transaction<'static, Any>,
        sandbox: &Sandbox,
        batch: &[&EventRow<'_>],
        cursors: &[i64],
        now: i64,
    ) -> Result<u64> {
        let numbered = self.backend.numbered_parameters();
        let mut inserted = 0;
        let mut done = 0;
        while done < batch.len() {
            let size = chunk_size(batch.len() - done);
            let mut query = sqlx::query(insert_sql(numbered, true, size));
            for (row, cursor) in batch[done..done + size].iter().zip(&cursors[done..]) {
                query = bind_row(query, sandbox, row, now)?.bind(*cursor);
            }
            inserted += query.execute(&mut **tx).await?.rows_affected();
            done += size;
        }
        Ok(inserted)
    }
}

type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

/// Binds the nine columns of an event row.
fn bind_row<'q>(
    query: Query<'q>,
    sandbox: &'q Sandbox,
    row: &'q EventRow<'_>,
    now: i64,
) -> Result<Query<'q>> {
    let event = row.event;
    Ok(query
        .bind(&event.sandbox_id)
        .bind(to_i64(event.seq, "seq")?)
        .bind(&sandbox.spec_id)
        .bind(&event.task_id)
        .bind(&event.kind)
        .bind(i64::from(event.v))
        .bind(row.at.as_str())
        .bind(row.data.as_str())
        .bind(now))
}

/// The event as the store keeps it: under its sandbox's spec.
fn stored_copy(sandbox: &Sandbox, event: &RawEvent) -> RawEvent {
    RawEvent {
        spec_id: sandbox.spec_id.clone(),
        ..event.clone()
    }
}

/// The stored events `first..=last` of a sandbox by seq.
async fn stored_events(
    tx: &mut Transaction<'static, Any>,
    sandbox_id: &str,
    first: u64,
    last: u64,
) -> Result<HashMap<u64, RawEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE sandbox_id = $1 AND seq BETWEEN $2 AND $3"
    ))
    .bind(sandbox_id)
    .bind(to_i64(first, "seq")?)
    .bind(to_i64(last, "seq")?)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| event_from_row(row).map(|event| (event.seq, event)))
        .collect()
}

/// [`FULL_BATCH`] when that many remain, else the largest power of two up to [`INSERT_CHUNK`]
/// that fits (≥ 1).
fn chunk_size(remaining: usize) -> usize {
    if remaining >= FULL_BATCH {
        return FULL_BATCH;
    }
    let mut size = INSERT_CHUNK;
    while size > remaining && size > 1 {
        size /= 2;
    }
    size
}

/// `INSERT INTO events … VALUES (…), (…) ON CONFLICT DO NOTHING` for `rows` rows (a chunk
/// size): with the cursor column, or without it and `RETURNING seq`; with `$n` or anonymous `?`
/// parameters.
/// Built once per shape.
fn insert_sql(numbered: bool, with_cursor: bool, rows: usize) -> &'static str {
    static SHAPES: OnceLock<Vec<String>> = OnceLock::new();
    // Chunk sizes: 1, 2, 4 … INSERT_CHUNK, then FULL_BATCH.
    let sizes = INSERT_CHUNK.trailing_zeros() as usize + 2;
    let shapes = SHAPES.get_or_init(|| {
        let mut shapes = Vec::with_capacity(4 * sizes);
        for numbered in [false, true] {
            for with_cursor in [false, true] {
                for size in (0..sizes - 1).map(|power| 1 << power).chain([FULL_BATCH]) {
                    shapes.push(build_insert_sql(numbered, with_cursor, size));
                }
            }
        }
        shapes
    });
    let position = if rows == FULL_BATCH {
        sizes - 1
    } else {
        rows.trailing_zeros() as usize
    };
    let index = (usize::from(numbered) * 2 + usize::from(with_cursor)) * sizes + position;
    shapes.get(index).map_or("", String::as_str)
}

fn build_insert_sql(numbered: bool, with_cursor: bool, rows: usize) -> String {
    let columns = if with_cursor { 10 } else { 9 };
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=columns)
                .map(|column| {
                    if numbered {
                        format!("${}", row * columns + column)
                    } else {
                        "?".to_string()
                    }
                })
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    // Released rows only need counting; unreleased ones name the seqs that were new.
    format!(
        "INSERT INTO events (sandbox_id, seq, spec_id, task_id, type, v, at, data, received_ms{})
         VALUES {}
         ON CONFLICT (sandbox_id, seq) DO NOTHING{}",
        if with_cursor { ", cursor" } else { "" },
        values.join(", "),
        if with_cursor { "" } else { " RETURNING seq" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn batches_go_in_power_of_two_chunks() {
        let chunks = |mut n: usize| {
            let mut sizes = Vec::new();
            while n > 0 {
                let size = chunk_size(n);
                sizes.push(size);
                n -= size;
            }
            sizes
        };
        assert_eq!(chunks(100), vec![100]);
        assert_eq!(chunks(99), vec![64, 32, 2, 1]);
        assert_eq!(chunks(1), vec![1]);
        assert_eq!(chunks(229), vec![100, 100, 16, 8, 4, 1]);
    }

    #[test]
    fn insert_shapes_number_or_omit_their_parameters() {
        assert_eq!(
            insert_sql(true, false, 2),
            "INSERT INTO events (sandbox_id, seq, spec_id, task_id, type, v, at, data, received_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9), ($10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (sandbox_id, seq) DO NOTHING RETURNING seq"
        );
        assert_eq!(
            insert_sql(false, true, 1),
            "INSERT INTO events (sandbox_id, seq, spec_id, task_id, type, v, at, data, received_ms, cursor)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (sandbox_id, seq) DO NOTHING"
        );
        assert_eq!(insert_sql(false, false, 64).matches('?').count(), 64 * 9);
        assert_eq!(insert_sql(true, true, 100).matches('$').count(), 100 * 10);
        assert!(insert_sql(true, true, 100).contains("$1000)"));
    }
}
