//! The search tool: a regular expression over the contents of the workspace's files.

use std::path::Path;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Done;
use super::fs::{Entries, FileGlob, MAX_FILE_BYTES, WalkedFile, looks_binary, walk};
use super::path::confine;
use super::shorten;

/// Matches one search returns at most.
const MATCH_CAP: usize = 200;
/// Characters of a matching line shown at most.
const LINE_CHARS: usize = 300;
/// Compiled size limit of a pattern, so that a huge pattern is an error and not a stall.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Deserialize)]
pub(super) struct SearchInput {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
}

pub(super) async fn search(
    root: &Path,
    input: SearchInput,
    cancel: &CancellationToken,
) -> Result<Done, String> {
    let regex = regex::RegexBuilder::new(&input.pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|err| format!("bad pattern: {err}"))?;
    let base = confine(root, input.path.as_deref().unwrap_or("."))?;
    if tokio::fs::metadata(&base.real).await.is_err() {
        return Err(format!("`{}` does not exist", base.display));
    }
    let glob = input.glob.as_deref().map(FileGlob::new).transpose()?;
    let files = walk(root, &base, glob, cancel, Entries::Files).await?;
    let cancel = cancel.clone();
    tokio::task::spawn_blocking(move || scan(&files, &regex, &cancel))
        .await
        .map_err(|err| format!("the search failed: {err}"))?
}

fn scan(
    files: &[WalkedFile],
    regex: &regex::Regex,
    cancel: &CancellationToken,
) -> Result<Done, String> {
    let mut matches: Vec<String> = Vec::new();
    let mut more = 0usize;
    for file in files {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let Ok(meta) = std::fs::metadata(&file.real) else {
            continue;
        };
        if meta.len() > MAX_FILE_BYTES {
            continue;
        }
        let Ok(bytes) = std::fs::read(&file.real) else {
            continue;
        };
        if looks_binary(&bytes) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (index, line) in text.lines().enumerate() {
            if regex.is_match(line) {
                if matches.len() < MATCH_CAP {
                    matches.push(format!(
                        "{}:{}:{}",
                        file.display,
                        index + 1,
                        shorten(line, LINE_CHARS)
                    ));
                } else {
                    more += 1;
                }
            }
        }
    }
    if matches.is_empty() {
        return Ok(Done::output("no matches"));
    }
    if more > 0 {
        matches.push(format!(
            "[{more} more matches not shown; narrow the pattern, path or glob]"
        ));
    }
    Ok(Done::output(matches.join("\n")))
}
