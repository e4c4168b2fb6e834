//! End to end: the real `omoi-worker` binary runs whole specs on the sample repository.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omoi_protocol::event::{Envelope, Event};
use omoi_protocol::phase::Phase;
use omoi_tests::fixtures;
use pretty_assertions::assert_eq;
use serde_json::json;

/// A workspace with the sample repository and the env of a spec run.
struct SpecRun {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    scripts: PathBuf,
    env: Vec<(String, String)>,
}

impl SpecRun {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let workspace = fixtures::copy_sample_repo(&dir.path().join("repo"));
        let scripts = dir.path().join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        let (title, description) = fixtures::sample_request();
        let mut run = SpecRun {
            _dir: dir,
            workspace,
            scripts,
            env: Vec::new(),
        };
        run.set("SPEC_ID", "spec-e2e")
            .set("SPEC_PHASE", "all")
            .set("SPEC_TITLE", &title)
            .set("SPEC_DESCRIPTION", &description)
            .set("OMOI_LLM", "scripted")
            .set("OMOI_SCRIPT", fixtures::sample_script().to_str().unwrap())
            .set("OMOI_RETRY_BASE_MS", "1")
            .set("OMOI_LOG", "warn");
        let workspace = run.workspace.to_str().unwrap().to_string();
        run.set("WORKSPACE", &workspace);
        run
    }

    fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    fn script(&mut self, name: &str, script: &serde_json::Value) -> &mut Self {
        let path = fixtures::write_script(&self.scripts, name, script);
        self.set("OMOI_SCRIPT", path.to_str().unwrap())
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_omoi-worker"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs to the end; returns the exit code, the events on stdout and stderr.
    fn run_local(&self) -> (i32, Vec<Envelope>, String) {
        let output = self.command().output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let events = stdout
            .lines()
            .map(|line| {
                serde_json::from_str::<Envelope>(line)
                    .unwrap_or_else(|e| panic!("stdout line is not an event ({e}): {line}"))
            })
            .collect();
        (
            output.status.code().unwrap_or(-1),
            events,
            String::from_utf8(output.stderr).unwrap(),
        )
    }
}

fn types(events: &[Envelope]) -> Vec<&'static str> {
    events.iter().map(|e| e.event.type_name()).collect()
}

/// The event types without heartbeats, agent chatter and usage: the spec's skeleton.
fn skeleton(events: &[Envelope]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::SpecPhaseStarted(s) => Some(format!("started {} #{}", s.phase, s.attempt)),
            Event::SpecEvalResult(r) => Some(format!(
                "eval {} #{} {}",
                r.evaluation.phase,
                r.attempt,
                if r.evaluation.passed { "pass" } else { "fail" }
            )),
            Event::SpecPhaseRetry(r) => Some(format!("retry {} #{}", r.phase, r.attempt)),
            Event::SpecPhaseCompleted(c) => Some(format!("completed {}", c.phase)),
            Event::SpecPhaseFailed(f) => Some(format!("failed {}", f.phase)),
            Event::SpecExecutionStarted(s) => Some(format!(
                "execution {}",
                s.phases
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Event::SpecExecutionCompleted(_) => Some("execution completed".into()),
            Event::SpecExecutionFailed(_) => Some("execution failed".into()),
            Event::AgentStarted(_) => Some("agent started".into()),
            Event::AgentCompleted(_) => Some("agent completed".into()),
            Event::AgentFailed(_) => Some("agent failed".into()),
            _ => None,
        })
        .collect()
}

fn full_skeleton(from: Phase) -> Vec<String> {
    let mut want = vec![
        "agent started".to_string(),
        format!(
            "execution {}",
            from.from_here()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    for phase in from.from_here() {
        if phase == Phase::Complete {
            break;
        }
        want.push(format!("started {phase} #1"));
        want.push(format!("eval {phase} #1 pass"));
        want.push(format!("completed {phase}"));
    }
    want.push("execution completed".into());
    want.push("agent completed".into());
    want
}

fn assert_seq_contiguous(events: &[Envelope]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "seq must run 1..=N without gaps");
}

#[test]
fn full_spec_on_the_sample_repository_local_run() {
    let run = SpecRun::new();
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(skeleton(&events), full_skeleton(Phase::Explore));
    assert_seq_contiguous(&events);
    assert!(
        events
            .iter()
            .all(|e| e.sandbox_id == "local" && e.spec_id.as_deref() == Some("spec-e2e"))
    );
    // The agent really used its tools on the repository.
    let tools: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentToolUse(t) => Some(t.tool.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        tools,
        [
            "list_files",
            "read_file",
            "read_file",
            "submit",
            "search",
            "submit",
            "read_file",
            "submit",
            "submit"
        ]
    );
    let failed_tools: Vec<&Envelope> = events
        .iter()
        .filter(|e| matches!(&e.event, Event::AgentToolResult(r) if !r.ok))
        .collect();
    assert_eq!(failed_tools, Vec::<&Envelope>::new());

    // The final spec is the one the script wrote, with SYNC computed.
    let Some(Event::SpecExecutionCompleted(spec)) =
        events.iter().rev().map(|e| &e.event).nth(1).cloned()
    else {
        panic!(
            "the event before agent.completed is the final spec: {:?}",
            types(&events)
        )
    };
    let script = fixtures::sample_script_json();
    let submitted_tasks = &script["tasks"][0][0]["tool_calls"][0]["input"];
    assert_eq!(serde_json::to_value(&spec.tasks).unwrap(), *submitted_tasks);
    assert!(spec.sync.ready_for_execution);
    assert_eq!(spec.sync.coverage_percent, 100.0);
    assert_eq!(
        spec.sync.parallel_groups,
        vec![
            vec!["TSK-001".to_string(), "TSK-002".to_string()],
            vec!["TSK-003".to_string()],
            vec!["TSK-004".to_string()]
        ]
    );
    assert_eq!(spec.sync.critical_path_hours, 2.0);

    // Artifacts stay in the workspace.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.workspace.join(".omoi/spec.json")).unwrap())
            .unwrap();
    assert_eq!(saved, serde_json::to_value(&*spec).unwrap());
    let checkpoint: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.workspace.join(".omoi/checkpoint.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(checkpoint["completed"], json!("sync"));
    assert_eq!(checkpoint["spec_id"], json!("spec-e2e"));
}

#[test]
fn stop_after_requirements_then_resume_from_the_checkpoint() {
    let mut run = SpecRun::new();
    run.set("SPEC_STOP_AFTER", "requirements");
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    let last = events.last().map(|e| e.event.clone());
    let Some(Event::AgentCompleted(done)) = last else {
        panic!("last event: {:?}", types(&events))
    };
    assert_eq!(done.stopped_after, Some(Phase::Requirements));
    assert!(
        !skeleton(&events).contains(&"started design #1".to_string()),
        "{:?}",
        skeleton(&events)
    );

    // The same command again picks up at DESIGN from .omoi/checkpoint.json.
    run.set("SPEC_STOP_AFTER", "");
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(skeleton(&events), full_skeleton(Phase::Design));
}

#[test]
fn requirements_failing_twice_passes_on_the_third_attempt() {
    let mut script = fixtures::sample_script_json();
    let good = script["requirements"][0].clone();
    let bad = json!([{"tool_calls": [{"name": "submit", "input": {"requirements": [{
        "id": "REQ-1",
        "title": "Shout",
        "text": "Greet should be fast and user-friendly.",
        "type": "functional",
        "priority": "high",
        "acceptance_criteria": ["works"]
    }]}}]}, {"text": "I have nothing better."}, {"text": "Still nothing."}, {"text": "Done."}]);
    script["requirements"] = json!([bad.clone(), bad, good]);
    let mut run = SpecRun::new();
    run.script("retry.json", &script);
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    let requirement_steps: Vec<String> = skeleton(&events)
        .into_iter()
        .filter(|s| s.contains("requirements") && !s.starts_with("execution"))
        .collect();
    assert_eq!(
        requirement_steps,
        [
            "started requirements #1",
            "eval requirements #1 fail",
            "retry requirements #2",
            "started requirements #2",
            "eval requirements #2 fail",
            "retry requirements #3",
            "started requirements #3",
            "eval requirements #3 pass",
            "completed requirements",
        ]
    );
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::SpecPhaseRetry(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2);
    for retry in &retries {
        assert!(
            retry.feedback.contains("REQ-1"),
            "feedback names the bad id: {}",
            retry.feedback
        );
        assert!(!retry.reason.is_empty());
    }
    let completed = events.iter().find_map(|e| match &e.event {
        Event::SpecPhaseCompleted(c) if c.phase == Phase::Requirements => Some(c.clone()),
        _ => None,
    });
    assert_eq!(completed.map(|c| c.attempts), Some(3));
}

#[test]
fn a_phase_whose_last_attempt_ran_out_of_turns_fails_with_kind_budget() {
    // The sample's EXPLORE needs three turns; two end the attempt on the turn limit.
    let mut run = SpecRun::new();
    run.script("sample.json", &fixtures::sample_script_json())
        .set("MAX_ATTEMPTS", "1")
        .set("MAX_TURNS", "2");
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 1, "stderr: {stderr}");
    let Some(Event::AgentFailed(failed)) = events.last().map(|e| e.event.clone()) else {
        panic!()
    };
    assert_eq!(failed.kind, omoi_protocol::event::ErrorKind::Budget);
    assert_eq!(
        failed.reason,
        "explore did not pass its gate: no passing output after 1 attempt: reached the limit \
         of 2 turns without an accepted submission"
    );
}

#[test]
fn a_phase_that_never_passes_fails_the_spec_with_the_reason() {
    let mut script = fixtures::sample_script_json();
    script["design"] = json!([[{"tool_calls": [{"name": "submit", "input": {"overview": "x"}}]},
        {"text": "no"}, {"text": "no"}, {"text": "no"}]]);
    let mut run = SpecRun::new();
    run.script("never.json", &script).set("MAX_ATTEMPTS", "2");
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 1, "stderr: {stderr}");
    let tail: Vec<String> = skeleton(&events).into_iter().rev().take(3).collect();
    assert_eq!(tail, ["agent failed", "execution failed", "failed design"]);
    let Some(Event::AgentFailed(failed)) = events.last().map(|e| e.event.clone()) else {
        panic!()
    };
    assert_eq!(failed.kind, omoi_protocol::event::ErrorKind::Gate);
    assert!(
        failed.reason.starts_with("design did not pass its gate"),
        "{}",
        failed.reason
    );
    assert!(stderr.contains("design did not pass its gate"), "{stderr}");
}

#[test]
fn bad_environment_exits_2_with_one_line_naming_the_variable() {
    let cases: Vec<(&str, &str, &str)> = vec![
        ("SPEC_PHASE", "planning", "SPEC_PHASE: unknown phase"),
        (
            "PHASE_CONTEXT_B64",
            "@@@",
            "PHASE_CONTEXT_B64: not valid base64",
        ),
        (
            "PHASE_CONTEXT_B64",
            "eyJ4IjoxfQ==",
            "PHASE_CONTEXT_B64: not a phase context JSON",
        ),
        (
            "PHASE_CONTEXT_URL",
            "http://127.0.0.1:9/c",
            "SANDBOX_TOKEN: required",
        ),
        (
            "MAX_TURNS",
            "zero",
            "MAX_TURNS: \"zero\" is not a whole number",
        ),
    ];
    for (name, value, want) in cases {
        let mut run = SpecRun::new();
        run.set(name, value);
        let (code, events, stderr) = run.run_local();
        assert_eq!(code, 2, "{name}={value}: {stderr}");
        assert_eq!(
            events,
            vec![],
            "{name}={value}: no events on a config error"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}={value}: {stderr}");
        assert!(
            lines[0].starts_with(&format!("omoi-worker: {want}")),
            "{}",
            lines[0]
        );
    }
    // A resume whose context lacks earlier outputs.
    let mut run = SpecRun::new();
    run.set("SPEC_PHASE", "design");
    let (code, _, stderr) = run.run_local();
    assert_eq!(code, 2);
    assert!(
        stderr.contains("missing: explore, requirements"),
        "{stderr}"
    );
    // No mode at all.
    let mut run = SpecRun::new();
    run.env.retain(|(n, _)| n != "SPEC_ID" && n != "SPEC_PHASE");
    let (code, _, stderr) = run.run_local();
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("omoi-worker: mode: no mode selected"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_script_fails_clearly() {
    let mut run = SpecRun::new();
    let path = run.scripts.join("broken.json");
    std::fs::write(&path, "{\"explore\": [[{\"tool_calls\": 3}]]}").unwrap();
    run.set("OMOI_SCRIPT", path.to_str().unwrap());
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("OMOI_SCRIPT"), "{stderr}");
    // agent.started went out before the provider was built; the run ends with agent.failed.
    assert_eq!(types(&events), ["agent.started", "agent.failed"]);
}

// ---- with a coordinator (the fake event sink) ----

fn sink_events(sink: &omoi_tests::sink::FakeSink) -> Vec<Envelope> {
    sink.envelopes()
}

fn with_sink(run: &mut SpecRun, sink: &omoi_tests::sink::FakeSink, sandbox: &str) {
    run.set("OMOIOS_API_URL", &sink.url())
        .set("SANDBOX_ID", sandbox)
        .set("SANDBOX_TOKEN", omoi_tests::sink::TOKEN)
        .set("HEARTBEAT_SECS", "1");
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_after_requirements_resumes_from_the_checkpoint() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sink = runtime.block_on(omoi_tests::sink::FakeSink::start(Default::default()));
    let mut script = fixtures::sample_script_json();
    // DESIGN thinks for a long time on the first run: the worker is killed meanwhile.
    script["design"][0][0]["delay_ms"] = json!(60_000);
    let mut run = SpecRun::new();
    with_sink(&mut run, &sink, "sb-kill");
    run.script("slow.json", &script);
    let mut child = run
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("DESIGN to start", Duration::from_secs(30), || {
        sink_events(&sink)
            .iter()
            .any(|e| matches!(&e.event, Event::SpecPhaseStarted(s) if s.phase == Phase::Design))
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first_run = sink_events(&sink).len();

    run.set("OMOI_SCRIPT", fixtures::sample_script().to_str().unwrap());
    let status = run.command().stdout(Stdio::null()).status().unwrap();
    assert_eq!(status.code(), Some(0));

    let events = sink_events(&sink);
    // Stored exactly once, without a gap. A batch the sink stored just before the kill, whose
    // ack never reached the worker, is resent from the spool and deduplicated by the sink.
    assert_seq_contiguous(&events);
    // The new run starts at DESIGN: EXPLORE and REQUIREMENTS are not redone.
    assert_eq!(skeleton(&events[first_run..]), full_skeleton(Phase::Design));
    // EXPLORE and REQUIREMENTS completed exactly once over both runs.
    let completions: Vec<Phase> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::SpecPhaseCompleted(c) => Some(c.phase),
            _ => None,
        })
        .collect();
    assert_eq!(
        completions,
        [
            Phase::Explore,
            Phase::Requirements,
            Phase::Design,
            Phase::Tasks,
            Phase::Sync
        ]
    );
    assert_eq!(sink.protocol_errors(), Vec::<String>::new());
}

#[test]
fn a_refusing_sink_gets_every_event_once_in_order() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sink = runtime.block_on(omoi_tests::sink::FakeSink::start(Default::default()));
    sink.set_refusing(true);
    let mut run = SpecRun::new();
    with_sink(&mut run, &sink, "sb-503");
    let child = run
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("refused requests", Duration::from_secs(30), || {
        sink.refused() >= 3
    });
    sink.set_refusing(false);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    // With a coordinator, stdout carries nothing.
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    let events = sink_events(&sink);
    assert_seq_contiguous(&events);
    assert_eq!(skeleton(&events), full_skeleton(Phase::Explore));
    assert_eq!(sink.protocol_errors(), Vec::<String>::new());
}

// ---- through the fake model APIs, over their real wire formats ----

/// The sample script's turns, in the order the spec asks for them, as fake API replies; a rate
/// limit and a server error are slipped in so the retries are exercised on the way.
fn sample_replies() -> Vec<omoi_tests::fake_llm::Reply> {
    use omoi_tests::fake_llm::{Reply, Turn};
    let script = fixtures::sample_script_json();
    let mut replies = Vec::new();
    for phase in ["explore", "requirements", "design", "tasks"] {
        for (n, turn) in script[phase][0].as_array().unwrap().iter().enumerate() {
            let mut reply = Turn::empty().with_usage(1200, 300);
            if let Some(text) = turn["text"].as_str() {
                reply = reply.with_text(text);
            }
            for (i, call) in turn["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let id = format!("toolu_{phase}_{n}_{i}");
                reply = reply.with_tool_call(
                    &id,
                    call["name"].as_str().unwrap(),
                    call["input"].clone(),
                );
            }
            replies.push(Reply::Turn(reply));
        }
        if phase == "requirements" {
            replies.insert(
                replies.len() - 1,
                Reply::RateLimited {
                    retry_after: "0".into(),
                },
            );
            replies.insert(replies.len() - 1, Reply::ServerError { status: 500 });
        }
    }
    replies
}

#[test]
fn full_spec_through_the_fake_anthropic_api() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(omoi_tests::fake_anthropic::FakeAnthropic::start(
        sample_replies(),
    ));
    let mut run = SpecRun::new();
    run.set("OMOI_LLM", "anthropic")
        .set("ANTHROPIC_API_KEY", omoi_tests::fake_anthropic::API_KEY)
        .set("ANTHROPIC_BASE_URL", &fake.base_url())
        .set("MODEL", "claude-sonnet-4-5");
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(skeleton(&events), full_skeleton(Phase::Explore));
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(fake.remaining(), 0);
    let usage: u64 = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AgentUsage(u) => Some(u.call.input_tokens),
            _ => None,
        })
        .sum();
    assert_eq!(
        usage,
        1200 * 8,
        "eight answered turns of 1200 input tokens each"
    );
    let Some(Event::AgentCompleted(done)) = events.last().map(|e| e.event.clone()) else {
        panic!()
    };
    assert!(
        done.counters.usage.cost_usd > 0.0,
        "a priced model costs something"
    );
    assert!(!stderr.contains(omoi_tests::fake_anthropic::API_KEY));
}

#[test]
fn full_spec_through_the_fake_openai_api() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(omoi_tests::fake_openai::FakeOpenAi::start(sample_replies()));
    let mut run = SpecRun::new();
    run.set("OMOI_LLM", "openai")
        .set("OPENAI_API_KEY", omoi_tests::fake_openai::API_KEY)
        .set("OPENAI_BASE_URL", &fake.base_url())
        .set("MODEL", "gpt-4.1");
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(skeleton(&events), full_skeleton(Phase::Explore));
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(fake.remaining(), 0);
    assert!(!stderr.contains(omoi_tests::fake_openai::API_KEY));
}

#[test]
fn spec_skill_mode_writes_the_documents_and_reports_their_evaluations() {
    let script = fixtures::sample_script_json();
    let submitted = |phase: &str| {
        let turns = script[phase][0].as_array().unwrap();
        let last = turns.last().unwrap();
        last["tool_calls"][0]["input"].clone()
    };
    let writes: Vec<serde_json::Value> = ["explore", "requirements", "design", "tasks"]
        .iter()
        .map(|phase| {
            json!({"name": "write_file", "input": {
                "path": format!(".omoi/specs/{phase}.json"),
                "content": serde_json::to_string_pretty(&submitted(phase)).unwrap(),
            }})
        })
        .collect();
    let skill = json!({"spec-skill": [[
        {"text": "Writing the four documents.", "tool_calls": writes},
        {"tool_calls": [{"name": "submit", "input": {"summary": "Spec for --shout."}}]}
    ]]});
    let mut run = SpecRun::new();
    run.env.retain(|(n, _)| n != "SPEC_ID" && n != "SPEC_PHASE");
    run.set("EXECUTION_MODE", "exploration")
        .set("REQUIRE_SPEC_SKILL", "true")
        .script("skill.json", &skill);
    let (code, events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    let verdicts: Vec<(Phase, bool)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::SpecEvalResult(r) => Some((r.evaluation.phase, r.evaluation.passed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (Phase::Explore, true),
            (Phase::Requirements, true),
            (Phase::Design, true),
            (Phase::Tasks, true),
            (Phase::Sync, true)
        ]
    );
    let Some(Event::AgentStarted(started)) = events.first().map(|e| e.event.clone()) else {
        panic!()
    };
    assert_eq!(started.mode, omoi_protocol::event::WorkerMode::SpecSkill);
    assert_eq!(types(&events).last(), Some(&"agent.completed"));
    for doc in ["explore", "requirements", "design", "tasks", "sync"] {
        assert!(
            run.workspace
                .join(format!(".omoi/specs/{doc}.json"))
                .is_file(),
            "{doc}.json"
        );
    }
}

/// Twelve turns whose `run` output is 21 KB each (about 63,000 tokens in all), then the
/// sample's EXPLORE output: a conversation three times the window of 24,000 tokens.
fn long_explore_replies() -> Vec<omoi_tests::fake_llm::Reply> {
    use omoi_tests::fake_llm::{Reply, Turn};
    let mut replies: Vec<Reply> = (0..12)
        .map(|n| {
            Reply::Turn(Turn::text("Listing more.").with_tool_call(
                &format!("toolu_seq_{n}"),
                "run",
                json!({"command": format!("seq {} {}", 100_000 + n, 103_000 + n)}),
            ))
        })
        .collect();
    replies.push(Reply::Turn(Turn::tool_call(
        "toolu_submit",
        "submit",
        fixtures::sample_outputs().remove(0).1,
    )));
    replies
}

#[test]
fn a_conversation_beyond_the_window_is_compacted_and_never_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(omoi_tests::fake_anthropic::FakeAnthropic::start(
        long_explore_replies(),
    ));
    fake.set_context_window(24_000);
    fake.meter_prompts();
    let mut run = SpecRun::new();
    run.set("OMOI_LLM", "anthropic")
        .set("ANTHROPIC_API_KEY", omoi_tests::fake_anthropic::API_KEY)
        .set("ANTHROPIC_BASE_URL", &fake.base_url())
        .set("MODEL", "claude-sonnet-4-5")
        .set("OMOI_CONTEXT_WINDOW", "24000")
        .set("SPEC_STOP_AFTER", "explore")
        .set("MAX_ATTEMPTS", "1");
    let (code, _events, stderr) = run.run_local();
    assert_eq!(code, 0, "stderr: {stderr}");
    // No prompt was too long (the fake would have refused it and said so here).
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(fake.remaining(), 0);
    let usage = fake.prompt_usage();
    assert_eq!(usage.len(), 13);
    let largest = usage.iter().map(|u| u.total()).max().unwrap();
    assert!(largest <= 24_000, "{largest}");
    let requests = fake.requests();
    let last = &requests[12].body["messages"];
    // The task is whole, the latest output is whole, old output was shortened.
    assert_eq!(
        last[0]["content"][0]["text"],
        requests[0].body["messages"][0]["content"][0]["text"]
    );
    let latest = last.as_array().unwrap().last().unwrap().to_string();
    assert!(latest.contains("103011"), "{latest}");
    assert!(!latest.contains("were removed"), "{latest}");
    assert!(
        last.to_string()
            .contains("were removed to keep the conversation within the model's context window"),
    );
    // Between compactions the cache still serves the prefix.
    assert!(
        usage.iter().any(|u| u.cache_read_input_tokens > 0),
        "{usage:?}"
    );
}

#[test]
fn a_bad_context_window_is_a_config_error() {
    for (value, problem) in [
        ("big", "\"big\" is not a whole number"),
        ("10", "10 is outside 1000..=10000000"),
        ("-1", "\"-1\" is not a whole number"),
    ] {
        let mut run = SpecRun::new();
        run.set("OMOI_LLM", "anthropic")
            .set("ANTHROPIC_API_KEY", "k")
            .set("OMOI_CONTEXT_WINDOW", value);
        let (code, _, stderr) = run.run_local();
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            stderr.trim(),
            format!("omoi-worker: OMOI_CONTEXT_WINDOW: {problem}")
        );
    }
}
