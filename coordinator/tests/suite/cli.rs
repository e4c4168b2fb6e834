//! The `omoi` binary: token, project and spec commands against a running coordinator with the
//! real worker (a spec from the request to its commits on the spec branch), and the offline demo.

use std::process::{Command, Output};

use std::sync::Arc;

use omoi_coordinator::sandbox::local::LocalProvider;
use pretty_assertions::assert_eq;

use super::common::{TestServer, each_backend};
use super::worker_e2e::{tune, worker_bin};

/// Runs `omoi` without blocking the runtime the test server runs on.
pub(super) async fn omoi(args: &[&str], server: &str, token: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_omoi"));
    command
        .args(args)
        .env("OMOI_SERVER", server)
        .env_remove("OMOI_TOKEN")
        .env_remove("DATABASE_URL");
    if let Some(token) = token {
        command.env("OMOI_TOKEN", token);
    }
    command.output().await.unwrap()
}

pub(super) fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn a_user_launches_and_watches_a_spec_from_the_command_line() {
    each_backend(|db| async move {
        let tmp = tempfile::tempdir().unwrap();
        let script = omoi_tests::fixtures::sample_script();
        let provider = Arc::new(LocalProvider::new(worker_bin(), &tmp.path().join("data")));
        let server = TestServer::start(&db, provider, |s| {
            tune(s, &script);
            s.scheduler_interval = std::time::Duration::from_millis(100);
        })
        .await;
        let url = server.url.clone();
        let bare = omoi_tests::git::seed_bare_repo(
            &omoi_tests::fixtures::sample_repo(),
            &tmp.path().join("greet.git"),
        );

        let token = stdout(
            &omoi(
                &["token", "create", "--user", "ada", "--database", &db.url],
                &url,
                None,
            )
            .await,
        );
        let token = token.trim().to_string();
        assert!(token.starts_with("omoi_u_"), "{token}");

        let no_token = omoi(&["project", "list"], &url, None).await;
        assert_eq!(no_token.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&no_token.stderr),
            "omoi: no token: pass --token or set OMOI_TOKEN (see `omoi token create`)\n"
        );

        let repo = format!("file://{}", bare.display());
        let project = stdout(
            &omoi(
                &[
                    "project",
                    "add",
                    "--name",
                    "sample",
                    "--repo",
                    &repo,
                    "--validation-command",
                    "sh tests/run.sh",
                ],
                &url,
                Some(&token),
            )
            .await,
        );
        let project = project.trim();
        let listed = stdout(&omoi(&["project", "list"], &url, Some(&token)).await);
        assert!(
            listed.starts_with(project) && listed.contains(&repo),
            "{listed}"
        );

        let request =
            std::fs::read_to_string(omoi_tests::fixtures::dir().join("sample-request.txt"))
                .unwrap();
        let launched = omoi(
            &["spec", "launch", &request, "--project", project, "--watch"],
            &url,
            Some(&token),
        )
        .await;
        let spec_id = stdout(&launched).trim().to_string();
        let branch = format!("omoi/{spec_id}");
        let progress = String::from_utf8_lossy(&launched.stderr);
        assert!(progress.contains("design        ✓ score"), "{progress}");
        assert!(
            progress.contains(&format!(
                "the spec is written; its tasks commit to {branch}\n"
            )),
            "{progress}"
        );
        for task in ["TSK-001", "TSK-002", "TSK-003", "TSK-004"] {
            assert!(
                progress.contains(&format!("{task:<13} attempt 1 running: ")),
                "{progress}"
            );
            assert!(
                progress.contains(&format!("{task:<13} validation `sh tests/run.sh` passed\n")),
                "{progress}"
            );
        }
        assert!(
            progress.ends_with(&format!("spec {spec_id} completed: branch {branch}\n")),
            "{progress}"
        );

        let list = stdout(&omoi(&["spec", "list"], &url, Some(&token)).await);
        assert_eq!(
            list,
            format!("{spec_id}  completed    complete      Add a --shout option to greet\n")
        );
        let show = stdout(&omoi(&["spec", "show", &spec_id], &url, Some(&token)).await);
        assert!(
            show.starts_with(&format!(
                "{spec_id}  Add a --shout option to greet\nstatus: completed\nphase:  complete\n\
                 branch: {branch}\n"
            )),
            "{show}"
        );
        // Each task with its state, attempts and the commit it landed.
        let log = omoi_tests::git::log(&bare, &branch);
        for (task, title) in [
            ("TSK-001", "Add the shout function"),
            ("TSK-002", "Parse the --shout option"),
            ("TSK-003", "Print through shout when asked"),
            ("TSK-004", "Test and document --shout"),
        ] {
            let commit = log
                .iter()
                .find(|c| c.subject == format!("{task}: {title}"))
                .unwrap_or_else(|| panic!("no commit of {task}: {log:?}"));
            // Attempts: 1/3, or 2/3 when two first pushes to the new branch raced.
            let landed = show.lines().any(|l| {
                l.starts_with(&format!("  {task}  completed "))
                    && l.contains(&format!("/3  {}  {title}", &commit.sha[..12]))
            });
            assert!(landed, "{task} {}\n{show}", commit.sha);
        }
        assert!(show.contains(" runs TSK-004\n"), "{show}");
        assert!(
            show.contains("  design        completed  score 1.00  attempts 1\n"),
            "{show}"
        );
        assert!(
            show.contains("coverage: 100 %, ready for execution: true\n"),
            "{show}"
        );

        let events = stdout(&omoi(&["spec", "events", &spec_id], &url, Some(&token)).await);
        let lines: Vec<serde_json::Value> = events
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"]["seq"], 1);
        assert_eq!(lines.last().unwrap()["event"]["type"], "agent.completed");

        // Stop for approval after REQUIREMENTS, then resume.
        let stopped = omoi(
            &[
                "spec",
                "launch",
                "Add a --shout option to greet",
                "--project",
                project,
                "--stop-after",
                "requirements",
                "--watch",
            ],
            &url,
            Some(&token),
        )
        .await;
        let second = stdout(&stopped).trim().to_string();
        assert!(
            String::from_utf8_lossy(&stopped.stderr).ends_with(&format!("spec {second} pending\n")),
            "{}",
            String::from_utf8_lossy(&stopped.stderr)
        );
        let show = stdout(&omoi(&["spec", "show", &second], &url, Some(&token)).await);
        assert!(show.contains("status: pending\nphase:  design\n"), "{show}");
        let resumed = omoi(&["spec", "resume", &second, "--watch"], &url, Some(&token)).await;
        assert!(
            stdout(&resumed).starts_with(&format!("{second}  executing    design")),
            "{}",
            String::from_utf8_lossy(&resumed.stdout)
        );
        let show = stdout(&omoi(&["spec", "show", &second], &url, Some(&token)).await);
        assert!(show.contains("status: completed\n"), "{show}");
        assert!(show.contains("completed  from explore\n"), "{show}");
        assert!(show.contains("completed  from design\n"), "{show}");

        let cancel = omoi(&["spec", "cancel", &spec_id], &url, Some(&token)).await;
        assert_eq!(cancel.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&cancel.stderr),
            format!("omoi: spec {spec_id} already ended (completed) (409 conflict)\n")
        );
        server.stop().await;
    })
    .await;
}

#[test]
fn the_demo_runs_a_spec_end_to_end_offline() {
    let worker = worker_bin();
    let output = Command::new(env!("CARGO_BIN_EXE_omoi"))
        .args(["demo", "--worker-bin"])
        .arg(&worker)
        .env_remove("OMOI_TOKEN")
        .output()
        .unwrap();
    let out = stdout(&output);
    assert!(out.contains("status: completed\n"), "{out}");
    assert!(out.contains("  TSK-004  completed "), "{out}");
    // While it runs it names the dashboard and a one-time sign-in link.
    let err = String::from_utf8_lossy(&output.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("dashboard: http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("/sign-in/link?code=omoi_l_"), "{line}");
    assert!(
        out.contains("  Test and document --shout  (after TSK-003)\n"),
        "{out}"
    );
    // The four commits on the spec branch, the last one TSK-004's (it waits for all others).
    let commits: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Commits on omoi/"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.trim().split_once(' ').map_or("", |(_, subject)| subject))
        .collect();
    assert_eq!(commits.len(), 4, "{out}");
    assert_eq!(commits[3], "TSK-004: Test and document --shout", "{out}");
    assert!(
        out.contains(
            "\nThe spec is recorded on the branch in .kiro/specs/add-a-shout-option-to-greet/ \
             (requirements.md, design.md, tasks.md).\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("The spec is complete: 4 tasks landed on branch omoi/"),
        "{out}"
    );
    assert!(
        out.ends_with("`sh tests/run.sh` passes at its tip (7 checks).\n"),
        "{out}"
    );
}

#[tokio::test]
async fn a_closed_stdout_ends_a_command_quietly() {
    let db = super::common::sqlite();
    let server = TestServer::start(&db, super::common::FakeProvider::new(), |_| {}).await;
    let (user, api) = server.user("ada").await;
    let (_, project) = api
        .post(
            "/projects",
            &serde_json::json!({"name": "p", "repo_url": "https://git.example/r.git"}),
        )
        .await;
    for n in 0..3 {
        let title = format!("spec {n}");
        let body = serde_json::json!({"project_id": project["id"], "title": title});
        assert_eq!(
            api.post("/specs", &body).await.0,
            reqwest::StatusCode::CREATED
        );
    }
    let token = server.store.create_user_token(&user.id).await.unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_omoi"));
    command
        .args(["spec", "list"])
        .env("OMOI_SERVER", &server.url)
        .env("OMOI_TOKEN", &token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    // The reader goes away before the first line is written, as `| head -0` would.
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned()
        ),
        (Some(0), String::new())
    );
    server.stop().await;
}

#[tokio::test]
async fn spec_events_prints_control_and_bidi_characters_escaped_in_its_json() {
    let db = super::common::sqlite();
    let super::common::Scenario {
        server,
        api,
        spec,
        sandbox,
        sandbox_api,
        ..
    } = super::common::Scenario::launched(&db).await;
    let text = "ok\u{202e}dlrow\u{1b}[2J\u{7f}\u{85} «fine»";
    let message = super::common::event(
        &sandbox,
        &spec,
        1,
        "agent.message",
        serde_json::json!({ "text": text }),
    );
    assert_eq!(
        sandbox_api.ingest(&sandbox, &[message]).await.0,
        reqwest::StatusCode::OK
    );
    let printed = stdout(
        &omoi(
            &["spec", "events", &spec],
            &server.url,
            api.token.as_deref(),
        )
        .await,
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "{printed}");
    assert!(
        !printed.chars().any(|c| (c.is_control() && c != '\n')
            || ('\u{2066}'..='\u{2069}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)),
        "{printed:?}"
    );
    assert!(
        lines[0].contains(r#""text":"ok\u202edlrow\u001b[2J\u007f\u0085 «fine»""#),
        "{printed}"
    );
    let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(event["event"]["data"]["text"], text);
    server.stop().await;
}

/// How stdout and stderr are closed.
#[derive(Debug, Clone, Copy)]
enum Closed {
    /// Pipes whose readers are gone: writes fail with EPIPE.
    Pipe,
    /// No descriptors 1 and 2 at all (`>&- 2>&-`).
    Descriptor,
}

/// `omoi args` with stdout and stderr closed the `closed` way, started.
fn omoi_closed(args: &[&str], envs: &[(&str, &str)], closed: Closed) -> std::process::Child {
    let mut command = match closed {
        Closed::Pipe => Command::new(env!("CARGO_BIN_EXE_omoi")),
        Closed::Descriptor => {
            let mut shell = Command::new("sh");
            shell
                .args(["-c", "exec \"$0\" \"$@\" >&- 2>&-"])
                .arg(env!("CARGO_BIN_EXE_omoi"));
            shell
        }
    };
    command
        .args(args)
        .env_remove("OMOI_TOKEN")
        .env_remove("DATABASE_URL")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null());
    if let Closed::Pipe = closed {
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        drop(reader);
        let (out_reader, out_writer) = rustix::pipe::pipe().unwrap();
        drop(out_reader);
        command
            .stdout(std::process::Stdio::from(out_writer))
            .stderr(std::process::Stdio::from(writer));
    }
    command.spawn().unwrap()
}

#[test]
fn commands_and_the_server_end_as_usual_with_stdout_and_stderr_closed() {
    let nowhere = "http://127.0.0.1:9";
    for closed in [Closed::Pipe, Closed::Descriptor] {
        for (args, envs, code) in [
            (&["project", "list"][..], &[("OMOI_SERVER", nowhere)][..], 1),
            (
                &["spec", "list"][..],
                &[("OMOI_SERVER", nowhere), ("OMOI_TOKEN", "omoi_u_x")][..],
                1,
            ),
            (&["serve", "--provider", "kubernetes"][..], &[][..], 1),
            (&["--no-such-flag"][..], &[][..], 2),
        ] {
            let status = omoi_closed(args, envs, closed).wait().unwrap();
            assert_eq!(status.code(), Some(code), "{closed:?} {args:?}");
        }
        // The server logs at debug as it starts and serves, with nowhere to write.
        let tmp = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let database = format!("sqlite://{}?mode=rwc", tmp.path().join("o.db").display());
        let data = tmp.path().join("data").display().to_string();
        let worker = worker_bin().display().to_string();
        let mut server = omoi_closed(
            &[
                "serve",
                "--listen",
                &listen,
                "--database",
                &database,
                "--data-dir",
                &data,
                "--worker-bin",
                &worker,
            ],
            &[("RUST_LOG", "debug")],
            closed,
        );
        let started = std::time::Instant::now();
        let mut answered = false;
        while !answered && started.elapsed() < std::time::Duration::from_secs(30) {
            assert_eq!(
                server.try_wait().unwrap(),
                None,
                "{closed:?}: the server ended"
            );
            answered = std::net::TcpStream::connect(&listen).is_ok_and(|mut stream| {
                use std::io::{Read, Write};
                let mut answer = String::new();
                write!(
                    stream,
                    "GET /api/v1/projects HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .and_then(|()| stream.read_to_string(&mut answer))
                .is_ok()
                    && answer.starts_with("HTTP/1.1 401")
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(answered, "{closed:?}: the server did not answer");
        assert_eq!(
            server.try_wait().unwrap(),
            None,
            "{closed:?}: the server ended"
        );
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[tokio::test]
async fn a_project_is_shown_and_changed_from_the_command_line() {
    each_backend(|db| async move {
        let server = TestServer::start(&db, super::common::FakeProvider::new(), |_| {}).await;
        let (_, api) = server.user("ada").await;
        let token = api.token.clone().unwrap();
        let url = server.url.clone();
        let project = stdout(
            &omoi(
                &[
                    "project",
                    "add",
                    "--name",
                    "sample",
                    "--repo",
                    "https://git.example/r.git",
                    "--image",
                    "registry.example/sandbox:1",
                    "--validation-command",
                    "make test",
                    "--env",
                    "MODEL=m1",
                    "--env",
                    "OMOI_LLM=scripted",
                ],
                &url,
                Some(&token),
            )
            .await,
        );
        let project = project.trim();
        let shown: serde_json::Value = serde_json::from_str(&stdout(
            &omoi(&["project", "show", project], &url, Some(&token)).await,
        ))
        .unwrap();
        assert_eq!(shown["image"], "registry.example/sandbox:1");

        let changed: serde_json::Value = serde_json::from_str(&stdout(
            &omoi(
                &[
                    "project",
                    "update",
                    project,
                    "--name",
                    "renamed",
                    "--default-image",
                    "--no-validation-command",
                    "--unset-env",
                    "MODEL",
                    "--secret-env",
                    "DB_PASSWORD=correct-horse",
                ],
                &url,
                Some(&token),
            )
            .await,
        ))
        .unwrap();
        assert_eq!(
            changed,
            serde_json::json!({
                "id": project,
                "name": "renamed",
                "repo_url": "https://git.example/r.git",
                "base_branch": "main",
                "provider": "local",
                "worker_env": {"OMOI_LLM": "scripted"},
                "secret_env": ["DB_PASSWORD"],
                "has_git_token": false,
                "created_at": shown["created_at"],
            })
        );

        // Refused before anything is sent, or by the server with its reason; nothing changes.
        let both = omoi(
            &[
                "project",
                "update",
                project,
                "--env",
                "A=1",
                "--unset-env",
                "A",
            ],
            &url,
            Some(&token),
        )
        .await;
        assert_eq!(both.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&both.stderr),
            "omoi: --unset-env A: the same command sets it\n"
        );
        let conflicting = omoi(
            &[
                "project",
                "update",
                project,
                "--image",
                "x",
                "--default-image",
            ],
            &url,
            Some(&token),
        )
        .await;
        assert_eq!(conflicting.status.code(), Some(2));
        let refused = omoi(
            &["project", "update", project, "--base-branch", ""],
            &url,
            Some(&token),
        )
        .await;
        assert_eq!(refused.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("base_branch must not be empty"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        let unknown = omoi(&["project", "show", "nope"], &url, Some(&token)).await;
        assert_eq!(unknown.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&unknown.stderr).contains("no project nope"),
            "{}",
            String::from_utf8_lossy(&unknown.stderr)
        );
        let again: serde_json::Value = serde_json::from_str(&stdout(
            &omoi(&["project", "show", project], &url, Some(&token)).await,
        ))
        .unwrap();
        assert_eq!(again, changed);
        server.stop().await;
    })
    .await;
}

/// Runs `omoi` with `input` on its stdin.
async fn omoi_with_stdin(args: &[&str], input: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_omoi"))
        .args(args)
        .env_remove("OMOI_TOKEN")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_its_users_dashboard_sessions_end() {
    use omoi_coordinator::store::SessionKind;
    each_backend(|db| async move {
        let server = TestServer::start(&db, super::common::FakeProvider::new(), |_| {}).await;
        let (ada, ada_api) = server.user("ada").await;
        let (_, bob_api) = server.user("bob").await;
        let ada_second = server.store.create_user_token(&ada.id).await.unwrap();
        let session = server
            .store
            .create_session(&ada.id, SessionKind::Session, 60_000)
            .await
            .unwrap();
        let ok = |api: &super::common::Api| {
            let api = api.clone();
            async move { api.get("/projects").await.0 }
        };
        let ada_token = ada_api.token.clone().unwrap();

        // One token, read from stdin: refused from then on; the other token still works.
        let revoked = omoi_with_stdin(
            &["token", "revoke", "--stdin", "--database", &db.url],
            &format!("{ada_token}\n"),
        )
        .await;
        assert_eq!(
            stdout(&revoked),
            "revoked 1 token(s); ended 1 dashboard session(s) and sign-in link(s)\n"
        );
        assert_eq!(ok(&ada_api).await, reqwest::StatusCode::UNAUTHORIZED);
        assert_eq!(
            ok(&server.api(Some(&ada_second))).await,
            reqwest::StatusCode::OK
        );
        assert_eq!(server.store.session_user(&session).await.unwrap(), None);

        // Bad input: says why, revokes nothing.
        for (args, input, expected) in [
            (
                vec!["token", "revoke", "--stdin"],
                "\n",
                "omoi: no token on stdin\n",
            ),
            (
                vec!["token", "revoke", "--stdin"],
                "omoi_u_nope\n",
                "omoi: that is no user token of this database\n",
            ),
            (
                vec!["token", "revoke", "--user", "carol"],
                "",
                "omoi: no user \"carol\"\n",
            ),
        ] {
            let mut args = args.clone();
            args.extend(["--database", &db.url]);
            let out = omoi_with_stdin(&args, input).await;
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{args:?}");
        }
        for args in [
            vec!["token", "revoke"],
            vec!["token", "revoke", "--user", "ada", "--stdin"],
        ] {
            let out = omoi_with_stdin(&args, "").await;
            assert_eq!(out.status.code(), Some(2), "{args:?}");
        }
        assert_eq!(
            ok(&server.api(Some(&ada_second))).await,
            reqwest::StatusCode::OK
        );

        // Every token of a user; another user's stay.
        let all = omoi_with_stdin(
            &["token", "revoke", "--user", "ada", "--database", &db.url],
            "",
        )
        .await;
        assert_eq!(
            stdout(&all),
            "revoked 1 token(s); ended 0 dashboard session(s) and sign-in link(s)\n"
        );
        assert_eq!(
            ok(&server.api(Some(&ada_second))).await,
            reqwest::StatusCode::UNAUTHORIZED
        );
        assert_eq!(ok(&bob_api).await, reqwest::StatusCode::OK);
        server.stop().await;
    })
    .await;
}
