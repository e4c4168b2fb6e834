//! Closes a process that holds secrets to the processes it starts, which run as the same user
//! and could otherwise read its `/proc` files: the secret strings of its environment block and
//! of its arguments are zeroed in place, then the process turns undumpable (its `mem` and
//! ptrace then need `CAP_SYS_PTRACE`).
//!
//! Being undumpable does not close `/proc/<pid>/environ` to a same-user process on every kernel
//! (Linux 6.18 lets it read), and `/proc/<pid>/cmdline` is open to every process whatever the
//! flag, so the erasure is what keeps those two files clean; undumpable closes the memory.
//!
//! The worker (`omoi-worker`, and its init in a container) and the coordinator (`omoi serve`,
//! whose local sandboxes run as its user) use it once their configuration has been read.
//!
//! Beside it, [`open_standard_streams`]: a process started with stdin, stdout or stderr closed
//! would otherwise hand that number to the next file it opens (a database, a socket), and its
//! log lines would be written there.

use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// Erases from the environment block every variable for which `keep` is false
/// ([`erase_environment`]), then makes the process undumpable ([`set_undumpable`]). In this
/// order: an undumpable process's `/proc` files belong to root, and a process running as
/// another user could no longer open its own memory to erase.
pub fn seal(keep: impl Fn(&str) -> bool) -> io::Result<()> {
    erase_environment(keep)?;
    set_undumpable()
}

/// [`seal`], and before it each argument keeps only its first `kept(argument)` bytes
/// ([`erase_arguments`]).
pub fn seal_with_arguments(
    keep: impl Fn(&str) -> bool,
    kept: impl Fn(&[u8]) -> usize,
) -> io::Result<()> {
    erase_arguments(kept)?;
    seal(keep)
}

/// Opens `/dev/null` on whichever of the descriptors 0, 1 and 2 is closed, so that none of them
/// is handed to a file the process opens later. Call it first, before anything opens a file.
pub fn open_standard_streams() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // The lowest free descriptor is handed out: while one of 0–2 is free, /dev/null takes it.
    for _ in 0..3 {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        if null.as_raw_fd() > 2 {
            return Ok(());
        }
        // It is the standard stream now: kept open for the life of the process.
        std::mem::forget(null);
    }
    Ok(())
}

/// Makes the process undumpable: its `/proc/<pid>/mem`, its other private `/proc` files and
/// ptrace then need `CAP_SYS_PTRACE`. Children get the flag reset when they exec.
pub fn set_undumpable() -> io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Erases from the process's own environment block (the strings `/proc/<pid>/environ` shows)
/// every variable for which `keep` is false (an entry whose name is not UTF-8 is erased).
///
/// Afterwards the erased variables are gone for this process too. It writes to the process's
/// own memory through `/proc/self/mem` (no `unsafe`: the kernel does the write), zeroing each
/// erased `NAME=value` string in place, which the C library and the standard library then skip
/// as empty entries. Variables set at run time live elsewhere and are not touched.
pub fn erase_environment(keep: impl Fn(&str) -> bool) -> io::Result<()> {
    zero_in_block(Block::Environment, |entry| {
        let name = entry.split(|byte| *byte == b'=').next().unwrap_or_default();
        let kept = std::str::from_utf8(name).is_ok_and(&keep);
        (!kept).then_some(0..entry.len())
    })
}

/// Zeroes in the process's own argument strings (what `/proc/<pid>/cmdline` shows, to every
/// process) all but the first `kept(argument)` bytes of each argument: `kept` answers the
/// argument's length to leave it whole, and e.g. the length of `NAME=` to hide a value.
/// Arguments already parsed keep their parsed values; `std::env::args` reads the cut ones.
pub fn erase_arguments(kept: impl Fn(&[u8]) -> usize) -> io::Result<()> {
    zero_in_block(Block::Arguments, |argument| {
        let from = kept(argument).min(argument.len());
        (from < argument.len()).then_some(from..argument.len())
    })
}

/// One of the two string blocks the kernel set up at exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Arguments,
    Environment,
}

impl Block {
    /// Its start and end fields in `/proc/<pid>/stat` (1-based, as `proc(5)` numbers them).
    fn fields(self) -> (usize, usize) {
        match self {
            Block::Arguments => (48, 49),
            Block::Environment => (50, 51),
        }
    }
}

/// Zeroes, in each NUL-terminated string of `block`, the range `zero` answers for it.
fn zero_in_block(block: Block, zero: impl Fn(&[u8]) -> Option<Range<usize>>) -> io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let (start, end) = block_bounds(&stat, block)?;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    let length = usize::try_from(end.saturating_sub(start))
        .map_err(|_| io::Error::other("the block is too large"))?;
    let mut bytes = vec![0u8; length];
    mem.read_exact_at(&mut bytes, start)?;
    for range in ranges_to_zero(&bytes, zero) {
        let at = start + range.start as u64;
        mem.write_all_at(&vec![0u8; range.len()], at)?;
    }
    Ok(())
}

/// The byte ranges of `block` (strings separated by NUL) to zero: for each non-empty string,
/// the range `zero` answers, shifted to the string's place in the block.
fn ranges_to_zero(block: &[u8], zero: impl Fn(&[u8]) -> Option<Range<usize>>) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut offset = 0usize;
    for entry in block.split(|byte| *byte == 0) {
        if !entry.is_empty() {
            if let Some(range) = zero(entry) {
                let range = range.start.min(entry.len())..range.end.min(entry.len());
                if !range.is_empty() {
                    ranges.push(offset + range.start..offset + range.end);
                }
            }
        }
        offset += entry.len() + 1;
    }
    ranges
}

/// Start and end address of `block` in the text of `/proc/<pid>/stat`.
fn block_bounds(stat: &str, block: Block) -> io::Result<(u64, u64)> {
    let bad = || {
        io::Error::other("/proc/self/stat has no addresses of the argument and environment strings")
    };
    // Fields after the command name, which may hold spaces and parentheses, start at the third.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(bad)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|value| value.parse().ok())
            .ok_or_else(bad)
    };
    let (start, end) = block.fields();
    let (start, end) = (field(start)?, field(end)?);
    if end < start {
        return Err(bad());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn the_bounds_of_both_blocks_are_read_after_the_command_name() {
        // 52 fields; the command name holds a space and a parenthesis.
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "1000".into();
        fields[49 - 3] = "1010".into();
        fields[50 - 3] = "1010".into();
        fields[51 - 3] = "1090".into();
        let stat = format!("42 (a) b) {}", fields.join(" "));
        assert_eq!(block_bounds(&stat, Block::Arguments).unwrap(), (1000, 1010));
        assert_eq!(
            block_bounds(&stat, Block::Environment).unwrap(),
            (1010, 1090)
        );
        for bad in ["", "42 (x", "42 (x) 1 2 3", &stat.replace(" 1090", " x")] {
            assert!(block_bounds(bad, Block::Environment).is_err(), "{bad:?}");
        }
        let reversed = stat.replace(" 1090", " 5");
        assert!(block_bounds(&reversed, Block::Environment).is_err());
    }

    #[test]
    fn ranges_cover_what_is_asked_in_each_string_and_never_a_separator() {
        let block = b"PATH=/bin\0KEY=secret\0\0TOKEN=x\0";
        let secret = |entry: &[u8]| (!entry.starts_with(b"PATH=")).then_some(0..entry.len());
        assert_eq!(ranges_to_zero(block, secret), vec![10..20, 22..29]);
        let values = |entry: &[u8]| {
            let at = entry
                .iter()
                .position(|b| *b == b'=')
                .map_or(entry.len(), |p| p + 1);
            Some(at..usize::MAX)
        };
        assert_eq!(ranges_to_zero(block, values), vec![5..9, 14..20, 28..29]);
        assert_eq!(ranges_to_zero(b"", secret), Vec::<Range<usize>>::new());
        // A range past the string is cut to it; an empty one is no range.
        assert_eq!(ranges_to_zero(b"ab\0", |_| Some(5..9)), vec![]);
    }
}
