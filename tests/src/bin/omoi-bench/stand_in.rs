//! Sandboxes whose worker is a stand-in: a shell script that the local provider starts like the
//! real worker (same environment, same token), which only writes its identity to its log and
//! waits. The benchmark then sends that sandbox's events itself, so the load is exactly what it
//! chooses. Sandboxes come to exist the real way: a spec created and executed through the API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::Result;
use crate::api::Api;
use crate::server::ServeOptions;

/// The stand-in worker. For a spec it prints `SPEC_ID SANDBOX_ID SANDBOX_TOKEN` to its log, then
/// lives while the benchmark lives (or until the coordinator terminates it). For a task it appends
/// `SANDBOX_ID SANDBOX_TOKEN TASK_ID` to the file `OMOI_BENCH_TASKS` names and lives ten seconds:
/// long enough for the benchmark to report the task's end before the process exits.
/// Started as a warm pool's standby, it runs `omoi-bench standby-stand-in` (this binary, its
/// path put in for `@BENCH@`), which waits for the assignment and then does the same.
const SCRIPT: &str = r#"#!/bin/sh
if [ -n "$OMOI_STANDBY_ID" ]; then
  exec '@BENCH@' standby-stand-in
fi
if [ -n "$TASK_ID" ]; then
  printf '%s %s %s\n' "$SANDBOX_ID" "$SANDBOX_TOKEN" "$TASK_ID" >> "$OMOI_BENCH_TASKS"
  exec sleep 10
fi
printf '%s %s %s\n' "$SPEC_ID" "$SANDBOX_ID" "$SANDBOX_TOKEN"
while kill -0 "$OMOI_BENCH_PID" 2>/dev/null; do sleep 1; done
"#;

/// One sandbox the benchmark speaks for.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub spec_id: String,
    pub sandbox_id: String,
    pub token: String,
}

impl Sandbox {
    /// `Bearer <token>`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// Writes the stand-in worker into `dir` and returns serve options that run it.
pub fn serve_options(dir: &Path, omoi: PathBuf, database: Option<String>) -> Result<ServeOptions> {
    let script = dir.join("stand-in-worker");
    let bench = std::env::current_exe()?.display().to_string();
    if bench.contains('\'') {
        return Err(format!("the path of omoi-bench {bench:?} holds a quote").into());
    }
    std::fs::write(&script, SCRIPT.replace("@BENCH@", &bench))?;
    let mut permissions = std::fs::metadata(&script)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions)?;
    Ok(ServeOptions {
        omoi,
        database,
        worker_bin: script,
        worker_env: vec![("OMOI_BENCH_PID".into(), std::process::id().to_string())],
        serve_args: Vec::new(),
        wrap: Vec::new(),
    })
}

/// Creates a project over an empty directory, then `n` specs, executes each, and reads each
/// sandbox's identity from its log.
pub async fn open(api: &Api, data_dir: &Path, repo: &Path, n: usize) -> Result<Vec<Sandbox>> {
    std::fs::create_dir_all(repo)?;
    let project = api
        .create_project(&repo.display().to_string(), json!({}))
        .await?;
    let mut sandboxes = Vec::with_capacity(n);
    for i in 0..n {
        let spec_id = api
            .create_spec(&project, &format!("Bench spec {i}"), "load")
            .await?;
        let detail = api.execute(&spec_id, None).await?;
        let sandbox = detail["sandboxes"]
            .as_array()
            .and_then(|s| s.last())
            .ok_or_else(|| format!("no sandbox in {detail}"))?;
        let sandbox_id = sandbox["id"]
            .as_str()
            .ok_or_else(|| format!("no sandbox id in {detail}"))?
            .to_string();
        // The local provider's directory is the handle's: a warm sandbox runs in its standby's.
        let dir = sandbox["handle"].as_str().unwrap_or(&sandbox_id);
        let log = data_dir.join("sandboxes").join(dir).join("sandbox.log");
        let token = read_identity(&log, &spec_id, &sandbox_id).await?;
        sandboxes.push(Sandbox {
            spec_id,
            sandbox_id,
            token,
        });
    }
    Ok(sandboxes)
}

async fn read_identity(log: &Path, spec_id: &str, sandbox_id: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            return match fields.as_slice() {
                [spec, sandbox, token] if *spec == spec_id && *sandbox == sandbox_id => {
                    Ok((*token).to_string())
                }
                _ => Err(format!("{}: unexpected identity {line:?}", log.display()).into()),
            };
        }
        if Instant::now() > deadline {
            return Err(format!("{} stayed empty", log.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Cancels the specs (the coordinator terminates their stand-in workers).
pub async fn close(api: &Api, sandboxes: &[Sandbox]) -> Result<()> {
    for sandbox in sandboxes {
        api.cancel(&sandbox.spec_id).await?;
    }
    Ok(())
}
