//! The stand-in worker's standby mode (`omoi-bench standby-stand-in`, run by the stand-in script
//! when the coordinator starts it as a warm pool's standby): it registers and long-polls for its
//! assignment as the real worker does, then does what the stand-in does with that environment.
//! For a task: it appends `SANDBOX_ID SANDBOX_TOKEN TASK_ID` to the file `OMOI_BENCH_TASKS`
//! names and lives ten seconds; for a spec: it prints `SPEC_ID SANDBOX_ID SANDBOX_TOKEN` and
//! lives while `OMOI_BENCH_PID` does.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use crate::Result;

/// How long one assignment poll waits.
const POLL_SECS: u64 = 25;

pub fn run() -> Result<()> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let (url, id, token) = (
        var("OMOIOS_API_URL")?,
        var("OMOI_STANDBY_ID")?,
        var("OMOI_STANDBY_TOKEN")?,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let env = runtime.block_on(assignment(&url, &id, &token))?;
    // Its connection to the coordinator closes now (the runtime that drives it goes): a stand-in
    // that lives on holds no connection, as the cold one holds none.
    drop(runtime);
    let get = |name: &str| {
        env.get(name)
            .cloned()
            .ok_or_else(|| format!("the assignment has no {name}"))
    };
    if let Some(task_id) = env.get("TASK_ID") {
        let line = format!(
            "{} {} {task_id}\n",
            get("SANDBOX_ID")?,
            get("SANDBOX_TOKEN")?
        );
        // One write of one short line to a file opened for appending: lines of several
        // sandboxes never interleave.
        std::fs::OpenOptions::new()
            .append(true)
            .open(get("OMOI_BENCH_TASKS")?)?
            .write_all(line.as_bytes())?;
        std::thread::sleep(Duration::from_secs(10));
        return Ok(());
    }
    println!(
        "{} {} {}",
        get("SPEC_ID")?,
        get("SANDBOX_ID")?,
        get("SANDBOX_TOKEN")?
    );
    std::io::stdout().flush()?;
    let bench = get("OMOI_BENCH_PID")?;
    while std::path::Path::new(&format!("/proc/{bench}")).exists() {
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// Registers, then polls until the assignment comes (204: poll again; anything else ends it).
async fn assignment(url: &str, id: &str, token: &str) -> Result<BTreeMap<String, String>> {
    let http = reqwest::Client::new();
    let registered = http
        .post(format!("{url}/api/v1/standby/{id}/register"))
        .bearer_auth(token)
        .json(&serde_json::json!({"worker_version": "bench"}))
        .send()
        .await?;
    if registered.status() != reqwest::StatusCode::NO_CONTENT {
        return Err(format!("registering answered {}", registered.status()).into());
    }
    loop {
        let response = http
            .get(format!(
                "{url}/api/v1/standby/{id}/assignment?wait_secs={POLL_SECS}"
            ))
            .bearer_auth(token)
            .send()
            .await?;
        match response.status() {
            reqwest::StatusCode::OK => {
                let body: serde_json::Value = response.json().await?;
                return Ok(serde_json::from_value(body["env"].clone())?);
            }
            reqwest::StatusCode::NO_CONTENT => {}
            status => return Err(format!("the assignment poll answered {status}").into()),
        }
    }
}
