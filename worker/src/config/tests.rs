//! Tests of the environment contract: every mode and every bad input.

use base64::Engine;
use omoi_protocol::artifact::{ExploreOutput, KeyFile};
use pretty_assertions::assert_eq;

use super::*;

struct Env {
    dir: tempfile::TempDir,
    script: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.json");
        std::fs::write(&script, "{}").unwrap();
        let mut env = Env {
            vars: Vec::new(),
            script,
            dir,
        };
        let workspace = env.dir.path().to_str().unwrap().to_string();
        env.set("WORKSPACE", &workspace);
        env.set("OMOI_LLM", "scripted");
        let script = env.script.to_str().unwrap().to_string();
        env.set("OMOI_SCRIPT", &script);
        env
    }

    fn spec(phase: &str) -> Self {
        let mut env = Env::new();
        env.set("SPEC_ID", "spec-1");
        env.set("SPEC_PHASE", phase);
        env.set("SPEC_TITLE", "Add a flag");
        env
    }

    fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    fn unset(&mut self, name: &str) -> &mut Self {
        self.vars.retain(|(n, _)| n != name);
        self
    }

    fn load(&self) -> Result<Config> {
        Config::from_vars(self.vars.clone())
    }

    /// The error's variable and message, for whole-value asserts.
    fn error(&self) -> (String, String) {
        match self.load() {
            Err(Error::Config { variable, problem }) => (variable, problem),
            Err(other) => panic!("expected a config error, got {other:?}"),
            Ok(config) => panic!("expected a config error, got {config:?}"),
        }
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn explore_output() -> ExploreOutput {
    ExploreOutput {
        summary: "A tool".into(),
        project_type: "cli".into(),
        tech_stack: vec!["sh".into()],
        key_files: vec![KeyFile {
            path: "README.md".into(),
            purpose: "docs".into(),
        }],
        conventions: vec![],
        entry_points: vec![],
        test_layout: "tests/".into(),
        questions: vec![],
    }
}

#[test]
fn spec_mode_from_title_with_defaults() {
    let env = Env::spec("all");
    let config = env.load().unwrap();
    let Mode::Spec(spec) = &config.mode else {
        panic!("not spec mode: {:?}", config.mode)
    };
    assert_eq!(spec.spec_id, "spec-1");
    assert_eq!(spec.start, Phase::Explore);
    assert_eq!(spec.stop_after, None);
    assert_eq!(
        spec.context,
        ContextSource::Inline(Box::new(PhaseContext {
            title: "Add a flag".into(),
            ..PhaseContext::default()
        }))
    );
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.sandbox_id, "local");
    assert_eq!(config.coordinator, None);
    assert_eq!(
        config.llm,
        LlmConfig::Scripted {
            script: env.script.clone()
        }
    );
    assert_eq!(config.workspace, env.dir.path().canonicalize().unwrap());
}

#[test]
fn context_values_win_and_description_fills_in() {
    let mut env = Env::spec("explore");
    env.set("SPEC_DESCRIPTION", "from env");
    env.set("PHASE_CONTEXT_B64", &b64(r#"{"title":"From context"}"#));
    let Mode::Spec(spec) = env.load().unwrap().mode else {
        panic!()
    };
    assert_eq!(
        spec.context,
        ContextSource::Inline(Box::new(PhaseContext {
            title: "From context".into(),
            description: "from env".into(),
            ..PhaseContext::default()
        }))
    );
}

#[test]
fn resume_with_complete_context_is_accepted() {
    let mut env = Env::spec("requirements");
    let context = PhaseContext {
        title: "t".into(),
        explore: Some(explore_output()),
        ..PhaseContext::default()
    };
    env.set(
        "PHASE_CONTEXT_B64",
        &b64(&serde_json::to_string(&context).unwrap()),
    );
    let Mode::Spec(spec) = env.load().unwrap().mode else {
        panic!()
    };
    assert_eq!(spec.start, Phase::Requirements);
    assert_eq!(spec.context, ContextSource::Inline(Box::new(context)));
}

#[test]
fn bad_base64_is_a_config_error() {
    let mut env = Env::spec("explore");
    env.set("PHASE_CONTEXT_B64", "not base64 at all!");
    let (variable, problem) = env.error();
    assert_eq!(variable, "PHASE_CONTEXT_B64");
    assert!(problem.starts_with("not valid base64"), "{problem}");
}

#[test]
fn json_that_is_not_a_context_is_a_config_error() {
    let mut env = Env::spec("explore");
    env.set("PHASE_CONTEXT_B64", &b64(r#"{"phase": 3}"#));
    let (variable, problem) = env.error();
    assert_eq!(variable, "PHASE_CONTEXT_B64");
    assert!(
        problem.starts_with("not a phase context JSON: missing field `title`"),
        "{problem}"
    );

    env.set("PHASE_CONTEXT_B64", &b64("[1, 2"));
    assert_eq!(env.error().0, "PHASE_CONTEXT_B64");

    env.set("PHASE_CONTEXT_B64", &b64(r#"{"title": "  "}"#));
    assert_eq!(
        env.error(),
        (
            "PHASE_CONTEXT_B64".into(),
            "the context has an empty title".into()
        )
    );
}

#[test]
fn unknown_phase_is_a_config_error() {
    let env = Env::spec("planning");
    assert_eq!(
        env.error(),
        (
            "SPEC_PHASE".into(),
            "unknown phase \"planning\": expected one of explore, requirements, design, tasks, \
             sync, complete"
                .into()
        )
    );
}

#[test]
fn resume_without_earlier_outputs_is_a_config_error() {
    let mut env = Env::spec("design");
    env.set("PHASE_CONTEXT_B64", &b64(r#"{"title":"t"}"#));
    assert_eq!(
        env.error(),
        (
            "PHASE_CONTEXT_B64".into(),
            "starting at design needs the outputs of every earlier phase; missing: explore, \
             requirements"
                .into()
        )
    );
    // Without any context, a resume is just as impossible.
    let env = Env::spec("tasks");
    assert_eq!(env.error().0, "SPEC_PHASE");
}

#[test]
fn context_url_without_token_is_a_config_error() {
    let mut env = Env::spec("explore");
    env.set("PHASE_CONTEXT_URL", "http://127.0.0.1:9/ctx");
    assert_eq!(
        env.error(),
        (
            "SANDBOX_TOKEN".into(),
            "required with PHASE_CONTEXT_URL (the context is fetched with it)".into()
        )
    );
    env.set("SANDBOX_TOKEN", "secret");
    let Mode::Spec(spec) = env.load().unwrap().mode else {
        panic!()
    };
    assert_eq!(
        spec.context,
        ContextSource::Url {
            url: "http://127.0.0.1:9/ctx".into(),
            token: Secret::new("secret")
        }
    );
    env.set("PHASE_CONTEXT_URL", "ftp://x");
    assert_eq!(env.error().0, "PHASE_CONTEXT_URL");
    env.set("PHASE_CONTEXT_URL", "http://127.0.0.1:9/ctx");
    env.set("PHASE_CONTEXT_B64", &b64(r#"{"title":"t"}"#));
    assert_eq!(env.error().0, "PHASE_CONTEXT_URL");
}

#[test]
fn context_over_the_env_limit_is_a_config_error() {
    let mut env = Env::spec("explore");
    let big = "A".repeat(omoi_protocol::env::MAX_ENV_VALUE_BYTES + 4);
    env.set("PHASE_CONTEXT_B64", &big);
    let (variable, problem) = env.error();
    assert_eq!(variable, "PHASE_CONTEXT_B64");
    assert_eq!(
        problem,
        "131076 bytes is over the 131072-byte limit of one environment variable; serve the \
         context through PHASE_CONTEXT_URL instead"
    );
}

#[test]
fn no_mode_is_a_config_error_naming_the_variables() {
    let env = Env::new();
    let (variable, problem) = env.error();
    assert_eq!(variable, "mode");
    for name in [
        "SPEC_ID",
        "SPEC_PHASE",
        "TASK_ID",
        "EXECUTION_MODE",
        "REQUIRE_SPEC_SKILL",
    ] {
        assert!(problem.contains(name), "{problem} lacks {name}");
    }
    let mut env = Env::new();
    env.set("SPEC_ID", "s");
    assert_eq!(env.error().0, "SPEC_PHASE");
    let mut env = Env::new();
    env.set("SPEC_PHASE", "explore");
    assert_eq!(env.error().0, "SPEC_ID");
}

#[test]
fn spec_skill_mode() {
    let mut env = Env::new();
    env.set("EXECUTION_MODE", "exploration");
    env.set("REQUIRE_SPEC_SKILL", "true");
    assert_eq!(env.error().0, "SPEC_TITLE");
    env.set("SPEC_TITLE", "Add a flag");
    let config = env.load().unwrap();
    let Mode::SpecSkill(skill) = config.mode else {
        panic!()
    };
    assert_eq!(
        skill,
        SkillMode {
            title: "Add a flag".into(),
            description: String::new()
        }
    );
    env.set("REQUIRE_SPEC_SKILL", "maybe");
    assert_eq!(env.error().0, "REQUIRE_SPEC_SKILL");
    env.set("REQUIRE_SPEC_SKILL", "false");
    assert_eq!(env.error().0, "mode");
    env.set("EXECUTION_MODE", "planning");
    assert_eq!(env.error().0, "EXECUTION_MODE");
}

#[test]
fn stop_after_is_validated() {
    let mut env = Env::spec("explore");
    env.set("SPEC_STOP_AFTER", "requirements");
    let Mode::Spec(spec) = env.load().unwrap().mode else {
        panic!()
    };
    assert_eq!(spec.stop_after, Some(Phase::Requirements));
    env.set("SPEC_STOP_AFTER", "later");
    assert_eq!(env.error().0, "SPEC_STOP_AFTER");
    let mut env = Env::spec("requirements");
    let context = PhaseContext {
        title: "t".into(),
        explore: Some(explore_output()),
        ..PhaseContext::default()
    };
    env.set(
        "PHASE_CONTEXT_B64",
        &b64(&serde_json::to_string(&context).unwrap()),
    );
    env.set("SPEC_STOP_AFTER", "explore");
    assert_eq!(
        env.error(),
        (
            "SPEC_STOP_AFTER".into(),
            "explore comes before the start phase requirements".into()
        )
    );
}

#[test]
fn coordinator_needs_sandbox_id_and_token() {
    let mut env = Env::spec("explore");
    env.set("OMOIOS_API_URL", "http://127.0.0.1:8080/");
    assert_eq!(env.error().0, "SANDBOX_ID");
    env.set("SANDBOX_ID", "sb-1");
    assert_eq!(env.error().0, "SANDBOX_TOKEN");
    env.set("SANDBOX_TOKEN", "tok");
    let config = env.load().unwrap();
    assert_eq!(
        config.coordinator,
        Some(Coordinator {
            base_url: "http://127.0.0.1:8080".into(),
            token: Secret::new("tok"),
            project_id: None,
        })
    );
    assert_eq!(config.sandbox_id, "sb-1");
    assert!(
        !format!("{config:?}").contains("tok\""),
        "token leaked into Debug"
    );
    env.set("OMOIOS_API_URL", "127.0.0.1:8080");
    assert_eq!(env.error().0, "OMOIOS_API_URL");
}

#[test]
fn limits_are_parsed_and_bounded() {
    let mut env = Env::spec("explore");
    env.set("MAX_TURNS", "7")
        .set("MAX_BUDGET_USD", "2.5")
        .set("PHASE_TIMEOUT_SECS", "30")
        .set("MAX_ATTEMPTS", "4")
        .set("PASS_THRESHOLD", "0.8")
        .set("HEARTBEAT_SECS", "2")
        .set("OMOI_RETRY_BASE_MS", "5");
    assert_eq!(
        env.load().unwrap().limits,
        Limits {
            max_turns: 7,
            max_budget_usd: 2.5,
            phase_timeout: Duration::from_secs(30),
            max_attempts: 4,
            pass_threshold: 0.8,
            heartbeat: Duration::from_secs(2),
            retry_base: Duration::from_millis(5),
            validation_timeout: Duration::from_secs(600),
            price: None,
        }
    );
    for (name, bad) in [
        ("MAX_TURNS", "0"),
        ("MAX_TURNS", "many"),
        ("MAX_BUDGET_USD", "-1"),
        ("MAX_BUDGET_USD", "NaN"),
        ("PHASE_TIMEOUT_SECS", "1.5"),
        ("MAX_ATTEMPTS", "0"),
        ("PASS_THRESHOLD", "1.5"),
        ("HEARTBEAT_SECS", "0"),
        ("VALIDATION_TIMEOUT_SECS", "0"),
        ("OMOI_PRICE_INPUT_PER_MTOK", "cheap"),
    ] {
        let mut env = Env::spec("explore");
        env.set(name, bad);
        assert_eq!(env.error().0, name, "{name}={bad}");
    }
}

#[test]
fn empty_values_count_as_unset() {
    let mut env = Env::spec("explore");
    env.set("MAX_TURNS", "").set("PHASE_CONTEXT_B64", " ");
    assert_eq!(env.load().unwrap().limits.max_turns, 50);
}

#[test]
fn providers_are_validated() {
    let mut env = Env::spec("explore");
    env.unset("OMOI_LLM");
    env.unset("OMOI_SCRIPT");
    assert_eq!(env.error().0, "OMOI_LLM");
    env.set("ANTHROPIC_API_KEY", "sk-ant");
    let LlmConfig::Anthropic(anthropic) = env.load().unwrap().llm else {
        panic!()
    };
    assert_eq!(anthropic.base_url, "https://api.anthropic.com");
    assert!(!format!("{anthropic:?}").contains("sk-ant"));
    env.set("ANTHROPIC_BASE_URL", "not a url");
    assert_eq!(env.error().0, "ANTHROPIC_BASE_URL");

    let mut env = Env::spec("explore");
    env.set("OMOI_LLM", "openai");
    assert_eq!(env.error().0, "OPENAI_API_KEY");
    env.set("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1");
    assert_eq!(env.error().0, "MODEL");
    env.set("MODEL", "qwen");
    let LlmConfig::OpenAi(openai) = env.load().unwrap().llm else {
        panic!()
    };
    assert_eq!(openai.api_key, "");
    assert_eq!(openai.base_url, "http://127.0.0.1:11434/v1");

    let mut env = Env::spec("explore");
    env.set("OMOI_LLM", "gpt");
    assert_eq!(env.error().0, "OMOI_LLM");
    env.set("OMOI_LLM", "scripted").unset("OMOI_SCRIPT");
    assert_eq!(env.error().0, "OMOI_SCRIPT");
    env.set("OMOI_SCRIPT", "/nonexistent/script.json");
    assert_eq!(env.error().0, "OMOI_SCRIPT");
}

#[test]
fn workspace_must_be_a_directory() {
    let mut env = Env::spec("explore");
    env.set("WORKSPACE", "/nonexistent/omoi");
    assert_eq!(env.error().0, "WORKSPACE");
    let file = env.script.to_str().unwrap().to_string();
    env.set("WORKSPACE", &file);
    assert_eq!(env.error().0, "WORKSPACE");
}

#[test]
fn task_mode_needs_a_matching_context() {
    let mut env = Env::new();
    env.set("TASK_ID", "TSK-001");
    assert_eq!(env.error().0, "TASK_CONTEXT_B64");
    env.set("TASK_CONTEXT_B64", "%%%");
    assert_eq!(env.error().0, "TASK_CONTEXT_B64");
    env.set("TASK_CONTEXT_B64", &b64("{}"));
    assert_eq!(env.error().0, "TASK_CONTEXT_B64");
}

#[test]
fn failure_report_needs_a_usable_coordinator() {
    let vars = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(FailureReport::from_vars(vars(&[("SPEC_PHASE", "bogus")])).is_none());
    let report = FailureReport::from_vars(vars(&[
        ("OMOIOS_API_URL", "http://127.0.0.1:1"),
        ("SANDBOX_ID", "sb"),
        ("SANDBOX_TOKEN", "t"),
        ("SPEC_ID", "s"),
        ("SPEC_PHASE", "bogus"),
        ("WORKSPACE", "/tmp"),
    ]))
    .unwrap();
    assert_eq!(report.sandbox_id, "sb");
    assert_eq!(report.spec_id.as_deref(), Some("s"));
    assert_eq!(report.workspace, PathBuf::from("/tmp"));
}

#[test]
fn a_spec_sandbox_may_name_the_repository_it_clones() {
    let mut env = Env::spec("explore");
    let Mode::Spec(spec) = env.load().unwrap().mode else {
        panic!("spec mode")
    };
    assert!(spec.repository.is_none());

    env.set("OMOI_REPO_URL", "git://git.example/sample.git");
    env.set("OMOI_GIT_TOKEN", "tok-123456789");
    let Mode::Spec(spec) = env.load().unwrap().mode else {
        panic!("spec mode")
    };
    let repository = spec.repository.unwrap();
    assert_eq!(
        (repository.url.as_str(), repository.base_branch.as_str()),
        ("git://git.example/sample.git", "main")
    );
    assert_eq!(repository.git_token.unwrap().expose(), "tok-123456789");
    env.set("OMOI_BASE_BRANCH", "develop");
    let Mode::Spec(spec) = env.load().unwrap().mode else {
        panic!("spec mode")
    };
    assert_eq!(spec.repository.unwrap().base_branch, "develop");
}

#[test]
fn a_bad_repository_or_branch_is_a_config_error() {
    let mut env = Env::spec("explore");
    env.set("OMOI_BASE_BRANCH", "main");
    assert_eq!(
        env.error(),
        (
            "OMOI_BASE_BRANCH".to_string(),
            "set without OMOI_REPO_URL (the branch of which repository?)".to_string()
        )
    );
    env.set("OMOI_REPO_URL", "--upload-pack=evil");
    assert_eq!(
        env.error(),
        (
            "OMOI_REPO_URL".to_string(),
            "must not begin with '-'".to_string()
        )
    );
    env.set("OMOI_REPO_URL", "git://h/r.git");
    env.set("OMOI_BASE_BRANCH", "ma in");
    assert_eq!(
        env.error(),
        (
            "OMOI_BASE_BRANCH".to_string(),
            "must not contain spaces or control characters".to_string()
        )
    );
}
