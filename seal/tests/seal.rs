//! Sealing a real process: a copy of this test binary, started with a secret in its environment
//! and one in its arguments, seals itself; this test then reads its `/proc` files as any process
//! of the same user could.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

const CHILD: &str = "OMOI_SEAL_TEST_CHILD";
const SECRET_VAR: &str = "OMOI_SEAL_TEST_KEY";
const SECRET: &str = "sk-seal-test-0123456789";
const ARGUMENT: &str = "KEY=arg-secret-0123456789";

/// The sealed process: runs only as the child of the test below.
#[test]
fn child_seals_itself() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let sealed = omoi_seal::seal_with_arguments(
        |name| name != SECRET_VAR,
        |argument| {
            if argument.starts_with(b"KEY=") {
                4
            } else {
                argument.len()
            }
        },
    );
    assert!(sealed.is_ok(), "{sealed:?}");
    assert_eq!(std::env::var_os(SECRET_VAR), None, "erased for itself too");
    println!("sealed");
    // Stays until the test has looked.
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}

#[test]
fn a_sealed_process_shows_no_secret_in_its_environment_or_arguments_and_closes_its_memory() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_seals_itself", ARGUMENT, "--nocapture"])
        .env(CHILD, "1")
        .env(SECRET_VAR, SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let said = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("sealed"));
    assert!(said.is_some(), "the child did not seal itself");
    let proc = |file: &str| std::fs::read(format!("/proc/{}/{file}", child.id()));
    match proc("environ") {
        Ok(environ) => {
            let environ = String::from_utf8_lossy(&environ);
            assert!(!environ.contains(SECRET), "{environ}");
            assert!(environ.contains(CHILD), "the rest stays: {environ}");
        }
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied),
    }
    let cmdline = String::from_utf8_lossy(&proc("cmdline").unwrap()).into_owned();
    assert!(!cmdline.contains("arg-secret"), "{cmdline:?}");
    assert!(cmdline.contains("KEY=\0"), "{cmdline:?}");
    assert!(cmdline.contains("child_seals_itself"), "{cmdline:?}");
    // Its memory needs CAP_SYS_PTRACE now (root in CI has it, and reads).
    let root = rustix::process::geteuid().is_root();
    if !root {
        let mem = std::fs::File::open(format!("/proc/{}/mem", child.id()));
        assert_eq!(
            mem.map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::PermissionDenied)
        );
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
