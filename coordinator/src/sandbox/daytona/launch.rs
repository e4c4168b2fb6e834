//! How the worker is started in a sandbox and how its secrets reach it, built without IO.
//!
//! The API keeps a sandbox's `env` and shows it to every member of the organisation that may read
//! sandboxes (`GET /sandbox/{id}` answers it). So the sandbox is created with the few variables
//! that say what it runs ([`VISIBLE`]), and the worker's whole environment goes in the body of
//! the toolbox call that starts it (`process/execute`'s `envs`): the daemon adds them to the
//! environment of the shell it pipes the command into, and keeps them nowhere. The command itself
//! holds no value of them, and runs the worker in the background with its output in
//! `$HOME/omoi/worker.log` and its exit code, when it ends, in `$HOME/omoi/exit`.

use std::collections::BTreeMap;

use omoi_protocol::env;

use crate::sandbox::SpawnRequest;

/// The variables also set on the sandbox itself, where the API shows them: what it runs, never a
/// secret.
pub const VISIBLE: [&str; 6] = [
    env::SANDBOX_ID,
    env::SPEC_ID,
    env::SPEC_PHASE,
    env::TASK_ID,
    env::EXECUTION_MODE,
    env::OMOIOS_API_URL,
];

/// The worker's executable in the snapshot, found on its `PATH`.
pub const WORKER: &str = "omoi-worker";

/// Starts the worker once (a second call, e.g. a retried request, finds `started` there and does
/// nothing). The workspace is `$HOME/omoi/workspace`.
pub const START: &str = r#"run="$HOME/omoi"
mkdir -p "$run" || exit 1
if ! mkdir "$run/started" 2>/dev/null; then echo "omoi: already started"; exit 0; fi
mkdir -p "$run/workspace" || exit 1
export WORKSPACE="$run/workspace"
cd "$WORKSPACE" || exit 1
nohup sh -c 'omoi-worker > "$0/worker.log" 2>&1; echo $? > "$0/exit.part" && mv "$0/exit.part" "$0/exit"' "$run" > /dev/null 2>&1 < /dev/null &
echo "omoi: started""#;

/// Answers `running`, the exit code, or `absent` (never started here).
pub const CHECK: &str = r#"run="$HOME/omoi"
if [ -f "$run/exit" ]; then cat "$run/exit"
elif [ -d "$run/started" ]; then echo running
else echo absent
fi"#;

/// The last bytes of the worker's output that are kept.
pub const LOG_BYTES: u64 = 4 * 1024 * 1024;

/// Prints the end of the worker's output.
pub fn read_log() -> String {
    format!(r#"tail -c {LOG_BYTES} "$HOME/omoi/worker.log" 2>/dev/null || true"#)
}

/// The sandbox's name in Daytona: `omoi-<sandbox id>` (unique in the organisation, so a create
/// sent twice is answered 409 and the sandbox there adopted).
pub fn sandbox_name(sandbox_id: &str) -> String {
    format!("omoi-{sandbox_id}")
}

/// The variables the sandbox is created with (see [`VISIBLE`]).
pub fn visible_env(request: &SpawnRequest) -> BTreeMap<String, String> {
    request
        .env
        .iter()
        .filter(|(name, _)| VISIBLE.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Whether the daemon takes `name` as a variable name (`^[A-Za-z_][A-Za-z0-9_]*$`).
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What is wrong with a request before anything is sent: a sandbox id that makes no name, a
/// variable the daemon would refuse, `WORKSPACE` (the launcher sets it).
pub fn check(request: &SpawnRequest) -> Result<(), String> {
    let id = &request.sandbox_id;
    let fits = !id.is_empty()
        && id.len() <= 58
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !fits {
        return Err(format!(
            "the sandbox id {id:?} does not make a Daytona sandbox name"
        ));
    }
    if let Some(name) = request.env.keys().find(|name| !is_env_name(name)) {
        return Err(format!(
            "the worker variable {name:?} is not a name the Daytona toolbox accepts"
        ));
    }
    Ok(())
}

/// The worker's environment for the start call: the request's, without `WORKSPACE` (set by
/// [`START`] to the sandbox's own directory).
pub fn worker_env(request: &SpawnRequest) -> BTreeMap<String, String> {
    request
        .env
        .iter()
        .filter(|(name, _)| name.as_str() != env::WORKSPACE)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Limits;
    use pretty_assertions::assert_eq;

    fn request(env: &[(&str, &str)]) -> SpawnRequest {
        SpawnRequest {
            sandbox_id: "sb-1".into(),
            image: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: BTreeMap::from([("omoi.owner".into(), "omoi".into())]),
            limits: Limits::default(),
            repo: None,
            image_pull_secrets: Vec::new(),
        }
    }

    #[test]
    fn only_what_the_sandbox_runs_is_visible_and_the_worker_gets_everything() {
        let request = request(&[
            ("SANDBOX_ID", "sb-1"),
            ("SPEC_ID", "spec-1"),
            ("SANDBOX_TOKEN", "omoi_sbx_secret"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("DB_URL", "postgres://u:p@h/db"),
            ("WORKSPACE", "/elsewhere"),
        ]);
        assert_eq!(
            visible_env(&request),
            BTreeMap::from([
                ("SANDBOX_ID".to_string(), "sb-1".to_string()),
                ("SPEC_ID".to_string(), "spec-1".to_string()),
            ])
        );
        let worker = worker_env(&request);
        assert_eq!(
            worker.keys().collect::<Vec<_>>(),
            [
                "ANTHROPIC_API_KEY",
                "DB_URL",
                "SANDBOX_ID",
                "SANDBOX_TOKEN",
                "SPEC_ID"
            ]
        );
        assert_eq!(
            request.sandbox_labels(),
            BTreeMap::from([
                ("omoi.owner".to_string(), "omoi".to_string()),
                ("omoi.sandbox".to_string(), "sb-1".to_string()),
                ("omoi.spec".to_string(), "spec-1".to_string()),
            ])
        );
    }

    #[test]
    fn the_commands_hold_no_variable_value() {
        for command in [START, CHECK, &read_log()] {
            assert!(
                !command.contains("TOKEN") && !command.contains("KEY"),
                "{command}"
            );
        }
        assert!(START.contains(WORKER));
    }

    #[test]
    fn requests_the_api_would_refuse_are_refused_before_sending() {
        assert_eq!(check(&request(&[("A_1", "x")])), Ok(()));
        assert_eq!(
            check(&request(&[("1A", "x")])),
            Err("the worker variable \"1A\" is not a name the Daytona toolbox accepts".into())
        );
        assert_eq!(
            check(&request(&[("A-B", "x")])),
            Err("the worker variable \"A-B\" is not a name the Daytona toolbox accepts".into())
        );
        let mut bad = request(&[]);
        bad.sandbox_id = "a b".into();
        assert_eq!(
            check(&bad),
            Err("the sandbox id \"a b\" does not make a Daytona sandbox name".into())
        );
        bad.sandbox_id = "x".repeat(59);
        assert!(check(&bad).is_err());
        bad.sandbox_id = String::new();
        assert!(check(&bad).is_err());
    }
}
