//! Tests of the tools through `ToolBox::call`.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;

struct Fixture {
    /// Holds the workspace (`ws/`) and a sibling directory outside it (`outside/`).
    dir: tempfile::TempDir,
    tools: ToolBox,
}

impl Fixture {
    fn new(access: Access) -> Self {
        Fixture::with_limits(access, RunLimits::default())
    }

    fn with_limits(access: Access, run: RunLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("src/nested")).unwrap();
        std::fs::create_dir_all(ws.join(".git")).unwrap();
        std::fs::create_dir_all(ws.join(".omoi")).unwrap();
        std::fs::create_dir_all(ws.join("target")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.txt"), "secret\n").unwrap();
        std::fs::write(ws.join(".gitignore"), "target/\n*.log\n").unwrap();
        std::fs::write(ws.join("README.md"), "# Demo\nHello world\n").unwrap();
        std::fs::write(
            ws.join("src/lib.rs"),
            "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
        )
        .unwrap();
        std::fs::write(ws.join("src/nested/deep.rs"), "// deep\nfn hello() {}\n").unwrap();
        std::fs::write(ws.join("target/out.rs"), "fn hello() {}\n").unwrap();
        std::fs::write(ws.join("debug.log"), "hello log\n").unwrap();
        std::fs::write(ws.join(".git/config"), "[core]\n").unwrap();
        std::fs::write(ws.join(".omoi/checkpoint.json"), "{}\n").unwrap();
        let tools = ToolBox::new(&ws, access, run).unwrap();
        Fixture { dir, tools }
    }

    fn ws(&self) -> &Path {
        self.tools.root()
    }

    fn outside(&self) -> std::path::PathBuf {
        self.dir.path().join("outside")
    }

    async fn call(&self, name: &str, input: serde_json::Value) -> ToolOutcome {
        self.tools
            .call(name, &input, &CancellationToken::new())
            .await
    }
}

fn fail(output: &str) -> ToolOutcome {
    ToolOutcome::failure(output)
}

fn ok(output: &str) -> ToolOutcome {
    ToolOutcome::success(output)
}

#[test]
fn specs_depend_on_access() {
    let read = Fixture::new(Access::ReadOnly);
    let write = Fixture::new(Access::ReadWrite);
    let names =
        |tools: &ToolBox| -> Vec<String> { tools.specs().into_iter().map(|s| s.name).collect() };
    assert_eq!(
        names(&read.tools),
        vec!["read_file", "list_files", "search", "run"]
    );
    assert_eq!(
        names(&write.tools),
        vec![
            "read_file",
            "list_files",
            "search",
            "run",
            "write_file",
            "edit_file"
        ]
    );
    for spec in write.tools.specs() {
        assert_eq!(spec.input_schema["type"], "object", "{}", spec.name);
        assert!(!spec.description.is_empty());
    }
    assert_eq!(
        write
            .tools
            .specs()
            .into_iter()
            .find(|s| s.name == "edit_file")
            .unwrap()
            .input_schema["required"],
        json!(["path", "old", "new"])
    );
}

#[tokio::test]
async fn bad_inputs_are_tool_errors() {
    let f = Fixture::new(Access::ReadOnly);
    assert_eq!(
        f.call("read_file", json!("{\"path\": ")).await,
        fail("input is not a JSON object: \"{\\\"path\\\": \"")
    );
    assert_eq!(
        f.call("read_file", json!({})).await,
        fail("bad input for read_file: missing field `path`")
    );
    assert_eq!(
        f.call("read_file", json!({"path": 3})).await,
        fail("bad input for read_file: invalid type: integer `3`, expected a string")
    );
    assert_eq!(
        f.call("delete_everything", json!({})).await,
        fail("unknown tool `delete_everything`; the tools are: read_file, list_files, search, run")
    );
    assert_eq!(
        f.call("write_file", json!({"path": "a", "content": "b"}))
            .await,
        fail("`write_file` is not available in this session: it may only read the workspace")
    );
    assert!(!f.ws().join("a").exists());
}

#[tokio::test]
async fn read_file_whole_and_in_parts() {
    let f = Fixture::new(Access::ReadOnly);
    assert_eq!(
        f.call("read_file", json!({"path": "README.md"})).await,
        ok("# Demo\nHello world\n")
    );
    assert_eq!(
        f.call(
            "read_file",
            json!({"path": "./src/../src/lib.rs", "offset_line": 2, "limit_lines": 1})
        )
        .await,
        ok("    a + b\n[lines 2–2 of 3 shown; read on with offset_line=3]")
    );
    assert_eq!(
        f.call("read_file", json!({"path": "src/lib.rs", "offset_line": 3}))
            .await,
        ok("}\n[lines 3–3 of 3 shown]")
    );
    assert_eq!(
        f.call("read_file", json!({"path": "src/lib.rs", "offset_line": 9}))
            .await,
        ok("`src/lib.rs` has 3 lines; offset_line 9 is past the end")
    );
    assert_eq!(
        f.call("read_file", json!({"path": "src/lib.rs", "offset_line": 0}))
            .await,
        fail("offset_line counts from 1")
    );
    assert_eq!(
        f.call("read_file", json!({"path": "missing.txt"})).await,
        fail("`missing.txt` does not exist")
    );
    assert_eq!(
        f.call("read_file", json!({"path": "src"})).await,
        fail("`src` is a directory; use list_files to see what is in it")
    );
    std::fs::write(f.ws().join("blob.bin"), [0u8, 1, 2, 3]).unwrap();
    assert_eq!(
        f.call("read_file", json!({"path": "blob.bin"})).await,
        fail("`blob.bin` looks binary (4 bytes); it is not shown")
    );
}

#[tokio::test]
async fn read_file_cuts_long_files() {
    let f = Fixture::new(Access::ReadOnly);
    let text: String = (1..=2500).map(|n| format!("line {n}\n")).collect();
    std::fs::write(f.ws().join("long.txt"), &text).unwrap();
    let out = f.call("read_file", json!({"path": "long.txt"})).await;
    assert!(out.ok);
    let expected: String = (1..=2000).map(|n| format!("line {n}\n")).collect();
    assert_eq!(
        out.output,
        format!("{expected}[lines 1–2000 of 2500 shown; read on with offset_line=2001]")
    );
}

#[tokio::test]
async fn every_escape_is_refused() {
    let f = Fixture::new(Access::ReadWrite);
    symlink("/etc/passwd", f.ws().join("passwd")).unwrap();
    symlink(f.outside().join("secret.txt"), f.ws().join("secret.txt")).unwrap();
    symlink(f.outside(), f.ws().join("out")).unwrap();

    let cases = [
        ("read_file", json!({"path": "../outside/secret.txt"})),
        ("read_file", json!({"path": "/etc/passwd"})),
        ("read_file", json!({"path": "passwd"})),
        ("read_file", json!({"path": "secret.txt"})),
        ("read_file", json!({"path": "out/secret.txt"})),
        ("list_files", json!({"path": "out"})),
        ("list_files", json!({"path": ".."})),
        ("search", json!({"pattern": "secret", "path": "out"})),
        ("write_file", json!({"path": "out/new.txt", "content": "x"})),
        (
            "write_file",
            json!({"path": "out/deeper/new.txt", "content": "x"}),
        ),
        ("write_file", json!({"path": "secret.txt", "content": "x"})),
        (
            "write_file",
            json!({"path": "../escaped.txt", "content": "x"}),
        ),
        (
            "edit_file",
            json!({"path": "out/secret.txt", "old": "secret", "new": "x"}),
        ),
        (
            "edit_file",
            json!({"path": "passwd", "old": "root", "new": "x"}),
        ),
    ];
    let mut messages = Vec::new();
    for (tool, input) in cases {
        let out = f.call(tool, input).await;
        assert!(!out.ok, "{tool} should be refused: {}", out.output);
        assert_eq!(out.edit, None);
        messages.push(out.output);
    }
    assert_eq!(
        messages,
        vec![
            "path `../outside/secret.txt` leads outside the workspace",
            "path `/etc/passwd` is absolute; paths are relative to the workspace root",
            "path `passwd` resolves outside the workspace (through a symlink)",
            "path `secret.txt` resolves outside the workspace (through a symlink)",
            "path `out/secret.txt` resolves outside the workspace (through a symlink)",
            "path `out` resolves outside the workspace (through a symlink)",
            "path `..` leads outside the workspace",
            "path `out` resolves outside the workspace (through a symlink)",
            "path `out/new.txt` resolves outside the workspace (through a symlink)",
            "path `out/deeper/new.txt` resolves outside the workspace (through a symlink)",
            "path `secret.txt` resolves outside the workspace (through a symlink)",
            "path `../escaped.txt` leads outside the workspace",
            "path `out/secret.txt` resolves outside the workspace (through a symlink)",
            "path `passwd` resolves outside the workspace (through a symlink)",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(f.outside().join("secret.txt")).unwrap(),
        "secret\n"
    );
    assert!(!f.outside().join("new.txt").exists());
    assert!(!f.outside().join("deeper").exists());
    assert!(!f.dir.path().join("escaped.txt").exists());
}

#[tokio::test]
async fn list_files_skips_ignored_and_internal_directories() {
    let f = Fixture::new(Access::ReadOnly);
    symlink(f.outside(), f.ws().join("out")).unwrap();
    assert_eq!(
        f.call("list_files", json!({})).await,
        ok(".gitignore\nREADME.md\nout\nsrc/lib.rs\nsrc/nested/deep.rs")
    );
    assert_eq!(
        f.call("list_files", json!({"glob": "*.rs"})).await,
        ok("src/lib.rs\nsrc/nested/deep.rs")
    );
    assert_eq!(
        f.call("list_files", json!({"glob": "src/*.rs"})).await,
        ok("src/lib.rs")
    );
    assert_eq!(
        f.call("list_files", json!({"path": "src/nested"})).await,
        ok("src/nested/deep.rs")
    );
    assert_eq!(
        f.call("list_files", json!({"glob": "*.py"})).await,
        ok("no files match")
    );
    assert_eq!(
        f.call("list_files", json!({"glob": "a{"})).await,
        fail(
            "bad glob `a{`: error parsing glob 'a{': unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"
        )
    );
}

#[tokio::test]
async fn search_reports_path_line_and_text() {
    let f = Fixture::new(Access::ReadOnly);
    symlink(f.outside().join("secret.txt"), f.ws().join("secret.txt")).unwrap();
    assert_eq!(
        f.call("search", json!({"pattern": "hello|Hello"})).await,
        ok("README.md:2:Hello world\nsrc/nested/deep.rs:2:fn hello() {}")
    );
    assert_eq!(
        f.call("search", json!({"pattern": "fn \\w+", "glob": "src/*.rs"}))
            .await,
        ok("src/lib.rs:1:pub fn add(a: i32, b: i32) -> i32 {")
    );
    assert_eq!(
        f.call(
            "search",
            json!({"pattern": "a \\+ b", "path": "src/lib.rs"})
        )
        .await,
        ok("src/lib.rs:2:    a + b")
    );
    assert_eq!(
        f.call("search", json!({"pattern": "secret"})).await,
        ok("no matches")
    );
    let bad = f.call("search", json!({"pattern": "("})).await;
    assert!(!bad.ok);
    assert!(
        bad.output.starts_with("bad pattern: regex parse error"),
        "{}",
        bad.output
    );
}

#[tokio::test]
async fn write_file_creates_directories_and_reports_the_edit() {
    let f = Fixture::new(Access::ReadWrite);
    assert_eq!(
        f.call(
            "write_file",
            json!({"path": "docs/guide/intro.md", "content": "a\nb\n"})
        )
        .await,
        ToolOutcome {
            ok: true,
            output: "created `docs/guide/intro.md` (2 lines)".into(),
            edit: Some(FileEdit {
                path: "docs/guide/intro.md".into(),
                lines_added: 2,
                lines_removed: 0
            }),
        }
    );
    assert_eq!(
        f.call(
            "write_file",
            json!({"path": "docs/guide/intro.md", "content": "a\nc\nd\n"})
        )
        .await,
        ToolOutcome {
            ok: true,
            output: "wrote `docs/guide/intro.md` (+2 −1 lines)".into(),
            edit: Some(FileEdit {
                path: "docs/guide/intro.md".into(),
                lines_added: 2,
                lines_removed: 1
            }),
        }
    );
    assert_eq!(
        std::fs::read_to_string(f.ws().join("docs/guide/intro.md")).unwrap(),
        "a\nc\nd\n"
    );
    assert_eq!(
        f.call("write_file", json!({"path": ".git/config", "content": "x"}))
            .await,
        fail("`.git/config` is inside .git or .omoi, which tools may not change")
    );
    assert_eq!(
        f.call(
            "write_file",
            json!({"path": ".omoi/checkpoint.json", "content": "x"})
        )
        .await,
        fail("`.omoi/checkpoint.json` is inside .git or .omoi, which tools may not change")
    );
    assert_eq!(
        f.call("write_file", json!({"path": "src", "content": "x"}))
            .await,
        fail("`src` is a directory")
    );
}

#[tokio::test]
async fn edit_file_replaces_exactly_one_occurrence() {
    let f = Fixture::new(Access::ReadWrite);
    std::fs::write(f.ws().join("x.txt"), "one\ntwo\ntwo\nthree\n").unwrap();
    assert_eq!(
        f.call(
            "edit_file",
            json!({"path": "x.txt", "old": "two\n", "new": "2\n"})
        )
        .await,
        fail(
            "`old` occurs 2 times in `x.txt`; include more surrounding text so that it occurs exactly once"
        )
    );
    assert_eq!(
        f.call(
            "edit_file",
            json!({"path": "x.txt", "old": "four", "new": "4"})
        )
        .await,
        fail(
            "`old` was not found in `x.txt` (0 occurrences); read the file and copy the text exactly, whitespace included"
        )
    );
    assert_eq!(
        f.call("edit_file", json!({"path": "x.txt", "old": "", "new": "4"}))
            .await,
        fail("`old` is empty; give the exact text to replace")
    );
    assert_eq!(
        f.call(
            "edit_file",
            json!({"path": "nope.txt", "old": "a", "new": "b"})
        )
        .await,
        fail("`nope.txt` does not exist")
    );
    assert_eq!(
        f.call(
            "edit_file",
            json!({"path": "x.txt", "old": "two\nthree", "new": "2\n3\n3.5"})
        )
        .await,
        ToolOutcome {
            ok: true,
            output: "edited `x.txt` (+3 −2 lines)".into(),
            edit: Some(FileEdit {
                path: "x.txt".into(),
                lines_added: 3,
                lines_removed: 2
            }),
        }
    );
    assert_eq!(
        std::fs::read_to_string(f.ws().join("x.txt")).unwrap(),
        "one\ntwo\n2\n3\n3.5\n"
    );
}

#[tokio::test]
async fn run_reports_exit_code_and_output() {
    let f = Fixture::new(Access::ReadOnly);
    assert_eq!(
        f.call(
            "run",
            json!({"command": "echo out; cat README.md | head -1"})
        )
        .await,
        ok("exit code: 0\nout\n# Demo\n")
    );
    assert_eq!(
        f.call("run", json!({"command": "pwd"})).await,
        ok(&format!("exit code: 0\n{}\n", f.ws().display()))
    );
    assert_eq!(
        f.call("run", json!({"command": "echo broken >&2; exit 3"}))
            .await,
        fail("exit code: 3\nbroken\n")
    );
    assert_eq!(
        f.call("run", json!({"command": "true"})).await,
        ok("exit code: 0\n(no output)")
    );
    assert_eq!(
        f.call("run", json!({"command": "  "})).await,
        fail("`command` is empty")
    );
}

#[tokio::test]
async fn run_caps_the_output_keeping_head_and_tail() {
    let f = Fixture::with_limits(
        Access::ReadOnly,
        RunLimits {
            timeout: Duration::from_secs(60),
            output_cap: 1000,
        },
    );
    let out = f
        .call("run", json!({"command": "yes | head -c 100000"}))
        .await;
    let half = "y\n".repeat(250);
    assert_eq!(
        out,
        ok(&format!(
            "exit code: 0\n{half}\n[… 99000 bytes of output cut …]\n{half}"
        ))
    );
}

/// Whether a process is gone (or a zombie waiting to be reaped).
fn is_dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn run_timeout_kills_the_whole_process_group() {
    let f = Fixture::new(Access::ReadOnly);
    let call = f.call(
        "run",
        json!({"command": "sleep 300 & echo $! > bg.pid; echo started; wait", "timeout_secs": 1}),
    );
    // Far above the 1 s timeout, far below the 300 s the processes would live unkilled.
    let out = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the run tool did not return after its timeout");
    assert_eq!(
        out,
        fail("timed out after 1 s; the command and everything it started were killed\nstarted\n")
    );
    let pid = std::fs::read_to_string(f.ws().join("bg.pid")).unwrap();
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_dead(pid) {
        assert!(
            Instant::now() < deadline,
            "background process {pid} survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn run_stops_when_cancelled() {
    let f = Fixture::new(Access::ReadOnly);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let out = f
        .tools
        .call("run", &json!({"command": "sleep 300"}), &cancel)
        .await;
    assert_eq!(out, fail("cancelled; the command was killed\n(no output)"));
}
