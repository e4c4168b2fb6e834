//! The event spool: every emitted event is appended to `spool.jsonl` before it is sent, and the
//! highest seq the coordinator acknowledged is kept in `spool.acked`, so a restarted worker resends
//! what was never acknowledged and continues the seq without a gap.
//!
//! Files in the spool directory:
//! - `spool.jsonl`: one [`Envelope`] per line, appended with a plain write (it survives the process
//!   being killed; no fsync per event). Compacted from time to time to the unacked lines.
//! - `spool.acked`: `{"acked_seq": N, "sandbox_id": "…"}`, replaced atomically (tmp + rename).
//!
//! Invariant: a line is only compacted away after an `acked_seq` at least as high as its seq was
//! persisted, so `max(last spooled seq, acked_seq)` never goes down and `next_seq` survives.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use omoi_protocol::event::Envelope;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The spool, shared by the emitter (appends) and the sender (acks).
pub type SharedSpool = Arc<Mutex<Spool>>;

/// The file of spooled events.
pub const SPOOL_FILE: &str = "spool.jsonl";
/// The file that remembers the acknowledged seq.
pub const ACKED_FILE: &str = "spool.acked";

/// Compact once this many acked lines are in the spool file …
const COMPACT_LINES: usize = 1024;
/// … or once the acked lines take this many bytes.
const COMPACT_BYTES: u64 = 4 * 1024 * 1024;

/// An append-only log of emitted events with the acknowledged seq.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    file: File,
    /// Length of `spool.jsonl` as far as whole lines go; a failed append is cut back to it.
    len: u64,
    /// Seq and byte length of every line in `spool.jsonl`, in file order.
    lines: VecDeque<Line>,
    acked_seq: u64,
    sandbox_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    seq: u64,
    len: u64,
}

/// What [`Spool::open`] found.
#[derive(Debug)]
pub struct Recovered {
    pub spool: Spool,
    /// Spooled events the coordinator never acknowledged, in seq order.
    pub unacked: Vec<Envelope>,
    /// The seq of the next event to emit.
    pub next_seq: u64,
}

/// The content of `spool.acked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AckedState {
    acked_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sandbox_id: Option<String>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and recovers what a previous run left.
    ///
    /// A line that is not an event (for example half written when the process was killed) is
    /// skipped with a warning; the file is then rewritten without it so later appends stay
    /// readable. An unreadable `spool.acked` is an error: guessing it could reuse seqs.
    pub fn open(dir: &Path) -> Result<Recovered> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating spool directory {}", dir.display()), e))?;
        let acked = read_acked(&dir.join(ACKED_FILE))?;
        let spool_path = dir.join(SPOOL_FILE);
        let content = match fs::read(&spool_path) {
            Ok(content) => content,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(Error::io(format!("reading {}", spool_path.display()), err)),
        };
        let scan = scan(&content, acked.acked_seq, &spool_path);
        let next_seq = scan.last_seq.max(acked.acked_seq) + 1;
        let sandbox_id = scan.sandbox_id.or(acked.sandbox_id);

        let unacked: Vec<Envelope> = scan.unacked.into_values().collect();
        let lines = if scan.needs_rewrite {
            let (bytes, lines) = encode_lines(&unacked)
                .map_err(|e| Error::json(format!("encoding {}", spool_path.display()), e))?;
            replace_file(dir, SPOOL_FILE, &bytes)
                .map_err(|e| Error::io(format!("rewriting {}", spool_path.display()), e))?;
            lines
        } else {
            scan.lines
        };
        let file = open_append(&spool_path)
            .map_err(|e| Error::io(format!("opening {}", spool_path.display()), e))?;
        let spool = Spool {
            dir: dir.to_path_buf(),
            file,
            len: lines.iter().map(|line| line.len).sum(),
            lines,
            acked_seq: acked.acked_seq,
            sandbox_id,
        };
        Ok(Recovered {
            spool,
            unacked,
            next_seq,
        })
    }

    /// Like [`Spool::open`], but a spool left by another sandbox (a workspace reused under a
    /// new sandbox id) is set aside as `*.orphaned`: its events cannot be delivered with this
    /// sandbox's token, and its seqs are not this sandbox's.
    pub fn open_for_sandbox(dir: &Path, sandbox_id: &str) -> Result<Recovered> {
        let recovered = Spool::open(dir)?;
        let Some(owner) = recovered.spool.sandbox_id.as_deref() else {
            return Ok(recovered);
        };
        if owner == sandbox_id {
            return Ok(recovered);
        }
        tracing::warn!(
            spool = %dir.display(),
            owner,
            sandbox_id,
            unsent = recovered.unacked.len(),
            "the event spool belongs to another sandbox; setting it aside and starting a new one"
        );
        drop(recovered);
        for name in [SPOOL_FILE, ACKED_FILE] {
            let from = dir.join(name);
            let to = dir.join(format!("{name}.orphaned"));
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(format!("moving {}", from.display()), err)),
            }
        }
        Spool::open(dir)
    }

    /// Appends one event as a JSON line. One plain write: the line is in the file (and survives
    /// the process being killed) when this returns; a failed write is cut back so the file
    /// never keeps half a line.
    pub fn append(&mut self, envelope: &Envelope) -> io::Result<()> {
        let mut line = serde_json::to_vec(envelope)?;
        line.push(b'\n');
        if let Err(err) = self.file.write_all(&line) {
            // Best effort: drop a partial line so the next append starts on a line of its own.
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::warn!(err = %cut, "could not cut a partial line from the spool");
            }
            return Err(err);
        }
        let len = line.len() as u64;
        self.len += len;
        self.lines.push_back(Line {
            seq: envelope.seq,
            len,
        });
        if self.sandbox_id.as_deref() != Some(envelope.sandbox_id.as_str()) {
            self.sandbox_id = Some(envelope.sandbox_id.clone());
        }
        Ok(())
    }

    /// Records that the coordinator stored every event up to `acked_seq`, and compacts the
    /// spool file once enough acknowledged lines have piled up. A lower or equal seq than the
    /// one recorded changes nothing.
    pub fn ack(&mut self, acked_seq: u64) -> io::Result<()> {
        if acked_seq <= self.acked_seq {
            return Ok(());
        }
        let state = AckedState {
            acked_seq,
            sandbox_id: self.sandbox_id.clone(),
        };
        replace_file(&self.dir, ACKED_FILE, &serde_json::to_vec(&state)?)?;
        self.acked_seq = acked_seq;

        let (acked_lines, acked_bytes) = self
            .lines
            .iter()
            .filter(|line| line.seq <= acked_seq)
            .fold((0usize, 0u64), |(n, bytes), line| (n + 1, bytes + line.len));
        if acked_lines >= COMPACT_LINES || acked_bytes >= COMPACT_BYTES {
            self.compact()?;
        }
        Ok(())
    }

    /// The highest seq recorded as acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    /// The sandbox whose events this spool holds, once it holds any.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.sandbox_id.as_deref()
    }

    /// Number of lines in the spool file (acknowledged ones included until compaction).
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    /// Rewrites the spool file with only the unacked lines (tmp + rename).
    fn compact(&mut self) -> io::Result<()> {
        let path = self.dir.join(SPOOL_FILE);
        let content = fs::read(&path)?;
        let mut kept = Vec::with_capacity(content.len());
        let mut lines = VecDeque::new();
        for raw in content.split_inclusive(|b| *b == b'\n') {
            let Some(seq) = line_seq(raw) else { continue };
            if seq > self.acked_seq {
                kept.extend_from_slice(raw);
                lines.push_back(Line {
                    seq,
                    len: raw.len() as u64,
                });
            }
        }
        replace_file(&self.dir, SPOOL_FILE, &kept)?;
        self.file = open_append(&path)?;
        self.len = kept.len() as u64;
        self.lines = lines;
        Ok(())
    }
}

/// What one pass over `spool.jsonl` found.
struct Scan {
    unacked: BTreeMap<u64, Envelope>,
    lines: VecDeque<Line>,
    last_seq: u64,
    sandbox_id: Option<String>,
    /// The file holds lines to drop (corrupt, acked, duplicate) or lacks its final newline.
    needs_rewrite: bool,
}

fn scan(content: &[u8], acked_seq: u64, path: &Path) -> Scan {
    let mut found = Scan {
        unacked: BTreeMap::new(),
        lines: VecDeque::new(),
        last_seq: 0,
        sandbox_id: None,
        needs_rewrite: !content.is_empty() && !content.ends_with(b"\n"),
    };
    for (index, raw) in content.split_inclusive(|b| *b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            found.needs_rewrite = true;
            continue;
        }
        let envelope = match serde_json::from_slice::<Envelope>(raw) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(
                    spool = %path.display(),
                    line = index + 1,
                    %err,
                    "skipping a spool line that is not an event"
                );
                found.needs_rewrite = true;
                continue;
            }
        };
        found.last_seq = found.last_seq.max(envelope.seq);
        found.sandbox_id = Some(envelope.sandbox_id.clone());
        if envelope.seq <= acked_seq {
            found.needs_rewrite = true;
            continue;
        }
        let seq = envelope.seq;
        if found.unacked.contains_key(&seq) {
            tracing::warn!(spool = %path.display(), seq, "skipping a second spool line with the same seq");
            found.needs_rewrite = true;
            continue;
        }
        if found
            .unacked
            .last_key_value()
            .is_some_and(|(last, _)| *last > seq)
        {
            // Out of order: the rewrite puts the lines back in seq order.
            found.needs_rewrite = true;
        }
        found.unacked.insert(seq, envelope);
        found.lines.push_back(Line {
            seq,
            len: raw.len() as u64,
        });
    }
    found
}

/// The seq of a spool line, without decoding the whole event.
fn line_seq(raw: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    serde_json::from_slice::<SeqOnly>(raw)
        .ok()
        .map(|line| line.seq)
}

fn encode_lines(envelopes: &[Envelope]) -> serde_json::Result<(Vec<u8>, VecDeque<Line>)> {
    let mut bytes = Vec::new();
    let mut lines = VecDeque::with_capacity(envelopes.len());
    for envelope in envelopes {
        let start = bytes.len();
        serde_json::to_writer(&mut bytes, envelope)?;
        bytes.push(b'\n');
        lines.push_back(Line {
            seq: envelope.seq,
            len: (bytes.len() - start) as u64,
        });
    }
    Ok((bytes, lines))
}

fn read_acked(path: &Path) -> Result<AckedState> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::json(format!("reading {}", path.display()), e)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(AckedState {
            acked_seq: 0,
            sandbox_id: None,
        }),
        Err(err) => Err(Error::io(format!("reading {}", path.display()), err)),
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Replaces `dir/name` with `bytes` atomically: a reader sees the old or the new content.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use omoi_protocol::event::{AgentMessage, ENVELOPE_VERSION, Event};
    use pretty_assertions::assert_eq;

    use super::*;

    fn envelope(sandbox_id: &str, seq: u64) -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            sandbox_id: sandbox_id.to_string(),
            seq,
            at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
            spec_id: Some("spec-1".to_string()),
            task_id: None,
            event: Event::AgentMessage(AgentMessage {
                text: format!("message {seq}"),
            }),
        }
    }

    fn envelopes(seqs: impl IntoIterator<Item = u64>) -> Vec<Envelope> {
        seqs.into_iter().map(|seq| envelope("sb-1", seq)).collect()
    }

    fn append_all(spool: &mut Spool, seqs: impl IntoIterator<Item = u64>) {
        for envelope in envelopes(seqs) {
            spool.append(&envelope).unwrap();
        }
    }

    fn line(envelope: &Envelope) -> String {
        format!("{}\n", serde_json::to_string(envelope).unwrap())
    }

    #[test]
    fn open_creates_the_directory_and_starts_at_seq_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".omoi");
        let recovered = Spool::open(&dir).unwrap();
        assert_eq!(recovered.unacked, Vec::<Envelope>::new());
        assert_eq!(recovered.next_seq, 1);
        assert!(dir.is_dir());
    }

    #[test]
    fn appended_events_come_back_unacked_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(tmp.path()).unwrap().spool;
        append_all(&mut spool, 1..=3);
        drop(spool);

        let recovered = Spool::open(tmp.path()).unwrap();
        assert_eq!(recovered.unacked, envelopes(1..=3));
        assert_eq!(recovered.next_seq, 4);
        assert_eq!(recovered.spool.sandbox_id(), Some("sb-1"));
    }

    #[test]
    fn acked_events_are_not_recovered() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(tmp.path()).unwrap().spool;
        append_all(&mut spool, 1..=5);
        spool.ack(3).unwrap();
        spool.ack(2).unwrap();
        assert_eq!(spool.acked_seq(), 3);
        drop(spool);

        let recovered = Spool::open(tmp.path()).unwrap();
        assert_eq!(recovered.unacked, envelopes(4..=5));
        assert_eq!(recovered.next_seq, 6);
        // The acked lines were dropped from the file when it was opened.
        let content = fs::read_to_string(tmp.path().join(SPOOL_FILE)).unwrap();
        assert_eq!(
            content,
            envelopes(4..=5).iter().map(line).collect::<String>()
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join(ACKED_FILE)).unwrap(),
            r#"{"acked_seq":3,"sandbox_id":"sb-1"}"#
        );
    }

    #[test]
    fn compaction_keeps_unacked_lines_and_the_next_seq() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(tmp.path()).unwrap().spool;
        let total = COMPACT_LINES as u64 + 10;
        append_all(&mut spool, 1..=total);
        spool.ack(total - 2).unwrap();
        assert_eq!(spool.line_count(), 2);
        let content = fs::read_to_string(tmp.path().join(SPOOL_FILE)).unwrap();
        assert_eq!(
            content,
            envelopes(total - 1..=total)
                .iter()
                .map(line)
                .collect::<String>()
        );

        // Appends after a compaction land in the new file.
        append_all(&mut spool, [total + 1]);
        spool.ack(total + 1).unwrap();
        drop(spool);
        let recovered = Spool::open(tmp.path()).unwrap();
        assert_eq!(recovered.unacked, Vec::<Envelope>::new());
        assert_eq!(recovered.next_seq, total + 2);
    }

    #[test]
    fn everything_acked_and_compacted_still_continues_the_seq() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(tmp.path()).unwrap().spool;
        let total = COMPACT_LINES as u64;
        append_all(&mut spool, 1..=total);
        spool.ack(total).unwrap();
        assert_eq!(spool.line_count(), 0);
        assert_eq!(
            fs::read(tmp.path().join(SPOOL_FILE)).unwrap(),
            Vec::<u8>::new()
        );
        drop(spool);

        let recovered = Spool::open(tmp.path()).unwrap();
        assert_eq!(recovered.next_seq, total + 1);
    }

    #[test]
    fn corrupt_lines_are_skipped_and_cut_from_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let good = envelopes([1, 2, 4]);
        let half = line(&envelope("sb-1", 5));
        let content = format!(
            "{}not json at all\n{}\n{}{}",
            line(&good[0]),
            line(&good[1]),
            line(&good[2]),
            &half[..half.len() / 2],
        );
        fs::write(tmp.path().join(SPOOL_FILE), content).unwrap();

        let mut recovered = Spool::open(tmp.path()).unwrap();
        assert_eq!(recovered.unacked, good);
        assert_eq!(recovered.next_seq, 5);

        // The half-written line does not glue itself to the next append.
        recovered.spool.append(&envelope("sb-1", 5)).unwrap();
        drop(recovered);
        let recovered = Spool::open(tmp.path()).unwrap();
        assert_eq!(recovered.unacked, envelopes([1, 2, 4, 5]));
    }

    #[test]
    fn out_of_order_and_repeated_lines_come_back_in_seq_order() {
        let tmp = tempfile::tempdir().unwrap();
        let content: String = envelopes([2, 1, 2, 3]).iter().map(line).collect();
        fs::write(tmp.path().join(SPOOL_FILE), content).unwrap();
        let recovered = Spool::open(tmp.path()).unwrap();
        assert_eq!(recovered.unacked, envelopes(1..=3));
        assert_eq!(recovered.next_seq, 4);
    }

    #[test]
    fn an_unreadable_acked_file_is_an_error_not_a_guess() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(ACKED_FILE), "seventeen").unwrap();
        let err = Spool::open(tmp.path()).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err:?}");
        assert!(err.to_string().contains(ACKED_FILE), "{err}");
    }

    #[test]
    fn a_spool_of_another_sandbox_is_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(tmp.path()).unwrap().spool;
        append_all(&mut spool, 1..=3);
        spool.ack(1).unwrap();
        drop(spool);

        let same = Spool::open_for_sandbox(tmp.path(), "sb-1").unwrap();
        assert_eq!((same.unacked.len(), same.next_seq), (2, 4));
        drop(same);

        let other = Spool::open_for_sandbox(tmp.path(), "sb-2").unwrap();
        assert_eq!(other.unacked, Vec::<Envelope>::new());
        assert_eq!(other.next_seq, 1);
        assert!(tmp.path().join("spool.jsonl.orphaned").is_file());
        assert!(tmp.path().join("spool.acked.orphaned").is_file());
    }
}
