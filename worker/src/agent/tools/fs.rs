//! The file tools: read_file, list_files, write_file, edit_file, and the workspace walk that
//! list_files and search share.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::path::{Confined, confine, is_protected};
use super::{Done, FileEdit};

/// Files larger than this are not read whole (search skips them, read_file refuses them).
pub(super) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Lines read_file shows when no limit is asked.
const DEFAULT_READ_LINES: usize = 2000;
/// Bytes of file content one read_file call returns at most.
const READ_OUTPUT_CAP: usize = 64 * 1024;
/// Paths one list_files call returns at most.
const LIST_CAP: usize = 1000;

#[derive(Debug, Deserialize)]
pub(super) struct ReadFileInput {
    path: String,
    offset_line: Option<u64>,
    limit_lines: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ListFilesInput {
    path: Option<String>,
    glob: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WriteFileInput {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct EditFileInput {
    path: String,
    old: String,
    new: String,
}

pub(super) async fn read_file(root: &Path, input: ReadFileInput) -> Result<Done, String> {
    let target = confine(root, &input.path)?;
    let meta = existing(&target).await?;
    if meta.is_dir() {
        return Err(format!(
            "`{}` is a directory; use list_files to see what is in it",
            target.display
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "`{}` is too large to read ({} bytes); use search, or run a command such as `head`",
            target.display,
            meta.len()
        ));
    }
    let bytes = tokio::fs::read(&target.real)
        .await
        .map_err(|err| format!("cannot read `{}`: {err}", target.display))?;
    if looks_binary(&bytes) {
        return Err(format!(
            "`{}` looks binary ({} bytes); it is not shown",
            target.display,
            bytes.len()
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.is_empty() {
        return Ok(Done::output(format!("`{}` is empty", target.display)));
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let total = lines.len();
    let offset = match input.offset_line {
        Some(0) => return Err("offset_line counts from 1".into()),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => 1,
    };
    let limit = match input.limit_lines {
        Some(0) => return Err("limit_lines must be at least 1".into()),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => DEFAULT_READ_LINES,
    };
    if offset > total {
        return Ok(Done::output(format!(
            "`{}` has {total} lines; offset_line {offset} is past the end",
            target.display
        )));
    }
    let mut output = String::new();
    let mut last = offset - 1;
    for line in lines.iter().skip(offset - 1).take(limit) {
        if output.len() + line.len() > READ_OUTPUT_CAP && last >= offset {
            break;
        }
        output.push_str(line);
        last += 1;
    }
    if output.len() > READ_OUTPUT_CAP {
        // One line longer than the cap (minified code, data): keep its start.
        let mut end = READ_OUTPUT_CAP;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
        output.push_str(&format!("\n[line {offset} is cut after {end} bytes]"));
    }
    if offset > 1 || last < total {
        if !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&format!("[lines {offset}–{last} of {total} shown"));
        if last < total {
            output.push_str(&format!("; read on with offset_line={}", last + 1));
        }
        output.push(']');
    }
    Ok(Done::output(output))
}

pub(super) async fn list_files(
    root: &Path,
    input: ListFilesInput,
    cancel: &CancellationToken,
) -> Result<Done, String> {
    let base = confine(root, input.path.as_deref().unwrap_or("."))?;
    existing(&base).await?;
    let glob = input.glob.as_deref().map(FileGlob::new).transpose()?;
    let files = walk(root, &base, glob, cancel, Entries::FilesAndLinks).await?;
    if files.is_empty() {
        return Ok(Done::output("no files match"));
    }
    let total = files.len();
    let mut output: Vec<String> = files
        .into_iter()
        .take(LIST_CAP)
        .map(|f| f.display)
        .collect();
    if total > LIST_CAP {
        output.push(format!(
            "[{} more files not shown; narrow with path or glob]",
            total - LIST_CAP
        ));
    }
    Ok(Done::output(output.join("\n")))
}

pub(super) async fn write_file(root: &Path, input: WriteFileInput) -> Result<Done, String> {
    let target = writable(root, &input.path)?;
    let before = match tokio::fs::symlink_metadata(&target.real).await {
        Ok(meta) if meta.is_dir() => {
            return Err(format!("`{}` is a directory", target.display));
        }
        Ok(_) => Some(read_text(&target).await?),
        Err(_) => None,
    };
    if let Some(parent) = target.real.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|err| format!("cannot create the directory of `{}`: {err}", target.display))?;
    }
    tokio::fs::write(&target.real, &input.content)
        .await
        .map_err(|err| format!("cannot write `{}`: {err}", target.display))?;
    let (lines_added, lines_removed) = line_delta(before.as_deref().unwrap_or(""), &input.content);
    let output = match before {
        None => format!(
            "created `{}` ({} lines)",
            target.display,
            input.content.lines().count()
        ),
        Some(_) => format!(
            "wrote `{}` (+{lines_added} −{lines_removed} lines)",
            target.display
        ),
    };
    Ok(Done {
        output,
        edit: Some(FileEdit {
            path: target.display,
            lines_added,
            lines_removed,
        }),
    })
}

pub(super) async fn edit_file(root: &Path, input: EditFileInput) -> Result<Done, String> {
    let target = writable(root, &input.path)?;
    let meta = existing(&target).await?;
    if meta.is_dir() {
        return Err(format!("`{}` is a directory", target.display));
    }
    if input.old.is_empty() {
        return Err("`old` is empty; give the exact text to replace".into());
    }
    if input.old == input.new {
        return Err("`old` and `new` are the same; nothing would change".into());
    }
    let before = read_text(&target).await?;
    let occurrences = before.matches(input.old.as_str()).count();
    match occurrences {
        1 => {}
        0 => {
            return Err(format!(
                "`old` was not found in `{}` (0 occurrences); read the file and copy the text \
                 exactly, whitespace included",
                target.display
            ));
        }
        n => {
            return Err(format!(
                "`old` occurs {n} times in `{}`; include more surrounding text so that it \
                 occurs exactly once",
                target.display
            ));
        }
    }
    let after = before.replacen(input.old.as_str(), &input.new, 1);
    tokio::fs::write(&target.real, &after)
        .await
        .map_err(|err| format!("cannot write `{}`: {err}", target.display))?;
    let (lines_added, lines_removed) = line_delta(&before, &after);
    Ok(Done {
        output: format!(
            "edited `{}` (+{lines_added} −{lines_removed} lines)",
            target.display
        ),
        edit: Some(FileEdit {
            path: target.display,
            lines_added,
            lines_removed,
        }),
    })
}

/// A confined path the agent may write to.
fn writable(root: &Path, raw: &str) -> Result<Confined, String> {
    let target = confine(root, raw)?;
    if target.display == "." {
        return Err("the workspace root is a directory, not a file".into());
    }
    if is_protected(&target.display) {
        return Err(format!(
            "`{}` is inside .git or .omoi, which tools may not change",
            target.display
        ));
    }
    Ok(target)
}

async fn existing(target: &Confined) -> Result<std::fs::Metadata, String> {
    tokio::fs::metadata(&target.real)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => format!("`{}` does not exist", target.display),
            _ => format!("`{}`: {err}", target.display),
        })
}

async fn read_text(target: &Confined) -> Result<String, String> {
    let bytes = tokio::fs::read(&target.real)
        .await
        .map_err(|err| format!("cannot read `{}`: {err}", target.display))?;
    String::from_utf8(bytes).map_err(|_| format!("`{}` is not UTF-8 text", target.display))
}

/// Whether `bytes` look like a binary file (a NUL byte near the start, as git decides).
pub(super) fn looks_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(8000).any(|b| *b == 0)
}

/// Lines added and removed between two versions: the lines between the common first and
/// common last lines count as changed.
fn line_delta(before: &str, after: &str) -> (u64, u64) {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let room = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    (
        (new.len() - prefix - suffix) as u64,
        (old.len() - prefix - suffix) as u64,
    )
}

/// A glob of list_files and search: with a `/` it matches the path from the workspace root,
/// without one it matches the file name.
#[derive(Debug, Clone)]
pub(super) struct FileGlob {
    matcher: GlobMatcher,
    whole_path: bool,
}

impl FileGlob {
    pub(super) fn new(glob: &str) -> Result<Self, String> {
        let matcher = globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map(|g: Glob| g.compile_matcher())
            .map_err(|err| format!("bad glob `{glob}`: {err}"))?;
        Ok(FileGlob {
            matcher,
            whole_path: glob.contains('/'),
        })
    }

    fn matches(&self, relative: &str) -> bool {
        if self.whole_path {
            self.matcher.is_match(relative)
        } else {
            let name = relative.rsplit('/').next().unwrap_or(relative);
            self.matcher.is_match(name)
        }
    }
}

/// Which entries a walk yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entries {
    /// Regular files and symlinks (listing a link's name reveals nothing of its target).
    FilesAndLinks,
    /// Regular files only (search reads them; a symlink could point outside).
    Files,
}

/// A file found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WalkedFile {
    pub(super) real: PathBuf,
    /// Relative to the workspace root, `/`-separated.
    pub(super) display: String,
}

/// The files under `base` (a file or a directory), sorted by path: gitignored files, `.git`
/// and `.omoi` skipped, symlinks not followed.
pub(super) async fn walk(
    root: &Path,
    base: &Confined,
    glob: Option<FileGlob>,
    cancel: &CancellationToken,
    entries: Entries,
) -> Result<Vec<WalkedFile>, String> {
    let root = root.to_path_buf();
    let base = base.real.clone();
    let cancel = cancel.clone();
    tokio::task::spawn_blocking(move || {
        walk_blocking(&root, &base, glob.as_ref(), &cancel, entries)
    })
    .await
    .map_err(|err| format!("the file walk failed: {err}"))?
}

fn walk_blocking(
    root: &Path,
    base: &Path,
    glob: Option<&FileGlob>,
    cancel: &CancellationToken,
    entries: Entries,
) -> Result<Vec<WalkedFile>, String> {
    let walker = ignore::WalkBuilder::new(base)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|entry| {
            let name = entry.file_name();
            name != ".git" && name != ".omoi"
        })
        .build();
    let mut files = Vec::new();
    for entry in walker {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let Ok(entry) = entry else { continue };
        let Some(kind) = entry.file_type() else {
            continue;
        };
        let wanted = kind.is_file() || (entries == Entries::FilesAndLinks && kind.is_symlink());
        if !wanted {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        let display = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if glob.is_some_and(|g| !g.matches(&display)) {
            continue;
        }
        files.push(WalkedFile {
            real: entry.path().to_path_buf(),
            display,
        });
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    Ok(files)
}
