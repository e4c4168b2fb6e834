//! The git token handed to git without any process's environment or arguments holding it:
//! for one git command that talks to the remote, the worker serves the token on a unix socket in
//! a new directory of mode 0700, and git's credential helper is the worker binary itself
//! (`omoi-worker git-credential --socket PATH get`), which asks that socket and prints what git
//! reads. The socket answers only processes descended from that git command (their pid from
//! `SO_PEERCRED`, their ancestry from `/proc`), and lives only while the command runs.
//!
//! What remains for a same-user process: the token in the memory of git's processes while they
//! run (ptrace needs a kernel that allows it between siblings), never in a file under `/proc`
//! that any process of the user may read (`environ`, `cmdline`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::config::Secret;
use crate::error::{Error, Result};

/// The user name git sends with the token (GitHub and most forges ignore it for tokens).
pub const USERNAME: &str = "x-access-token";

/// The subcommand of `omoi-worker` that git runs as its credential helper.
pub const SUBCOMMAND: &str = "git-credential";

/// Where the sockets' directories are made (the worker's; a socket path must fit in 108 bytes).
const RUNTIME_DIR: &str = "/tmp";

/// How far up the process tree a helper may be from git (git → remote helper → shell → helper).
const MAX_ANCESTRY: usize = 16;

/// The socket of one git command, removed with its directory on drop.
#[derive(Debug)]
pub struct CredentialSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl Drop for CredentialSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl CredentialSocket {
    /// Binds `git.sock` in a new directory of mode 0700 under the runtime directory.
    pub fn bind() -> Result<Self> {
        Self::bind_in(Path::new(RUNTIME_DIR))
    }

    /// As [`CredentialSocket::bind`], under `parent`.
    pub fn bind_in(parent: &Path) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let random = uuid::Uuid::new_v4().simple().to_string();
        let dir = parent.join(format!("omoi-git-{}", &random[..12]));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let path = dir.join("git.sock");
        let listener = match UnixListener::bind(&path) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::io(format!("bind {}", path.display()), e));
            }
        };
        Ok(CredentialSocket {
            dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `credential.helper` value that runs `program` (the worker binary) against this
    /// socket; git appends the action (`get`, `store`, `erase`).
    pub fn helper(&self, program: &Path) -> String {
        format!(
            "!{} {SUBCOMMAND} --socket {}",
            shell_quote(&program.to_string_lossy()),
            shell_quote(&self.path.to_string_lossy())
        )
    }

    /// Answers every connection of a process descended from `git` with the token, and refuses
    /// (closes) any other; runs until dropped.
    pub async fn serve(&self, git: u32, token: &Secret) {
        let answer = format!("username={USERNAME}\npassword={}\n", token.expose());
        loop {
            let Ok((mut stream, _)) = self.listener.accept().await else {
                // Out of descriptors, say: git's helper retries nothing, but we keep serving.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let peer = stream
                .peer_cred()
                .ok()
                .and_then(|cred| cred.pid())
                .and_then(|pid| u32::try_from(pid).ok());
            match peer {
                Some(pid) if descends_from(pid, git) => {
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
                _ => tracing::warn!(
                    ?peer,
                    "refused the git token to a process that is not part of the git command"
                ),
            }
        }
    }
}

/// Whether `pid` is `ancestor` or below it in the process tree (read from `/proc/<pid>/stat`).
fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..MAX_ANCESTRY {
        if current == ancestor {
            return true;
        }
        match parent_of(current) {
            Some(parent) if parent > 1 => current = parent,
            _ => return false,
        }
    }
    false
}

/// The parent pid of `pid`: the 4th field of `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parent_in_stat(&stat)
}

fn parent_in_stat(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The helper's side (`omoi-worker git-credential --socket PATH ACTION`): reads what git writes
/// on stdin, and for `get` prints the credential the socket answers; `store` and `erase` do
/// nothing (the token is never kept). A socket that refuses or is gone prints nothing: git then
/// goes on without a credential and fails with the remote's refusal.
pub fn helper(
    socket: &Path,
    action: &str,
    input: &mut impl Read,
    output: &mut impl Write,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    input.take(64 * 1024).read_to_end(&mut request)?;
    if action != "get" {
        return Ok(());
    }
    let stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(_) => return Ok(()),
    };
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    output.write_all(&answer)?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn the_parent_is_read_after_the_command_name() {
        assert_eq!(parent_in_stat("42 (git remote) x) S 17 42 42 0"), Some(17));
        assert_eq!(parent_in_stat("42 (git"), None);
        assert_eq!(parent_in_stat("42 (git) S x"), None);
        assert_eq!(parent_in_stat(""), None);
    }

    #[test]
    fn a_process_descends_from_itself_and_its_ancestors_only() {
        let me = std::process::id();
        assert!(descends_from(me, me));
        let parent = parent_of(me).unwrap();
        assert!(descends_from(me, parent));
        assert!(!descends_from(parent, me));
        assert!(!descends_from(u32::MAX, me), "no such process");
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }

    #[tokio::test]
    async fn the_socket_answers_a_descendant_of_git_and_refuses_anyone_else() {
        let parent = tempfile::tempdir().unwrap();
        let socket = CredentialSocket::bind_in(parent.path()).unwrap();
        let token = Secret::new("tok-0123456789");
        let path = socket.path().to_path_buf();
        // This test process plays git's descendant when `git` is its own pid, and a stranger
        // when it is a pid that is not its ancestor (pid 1's child 2 never is).
        let me = std::process::id();
        let ask = |path: PathBuf, action: &'static str| {
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                helper(
                    &path,
                    action,
                    &mut &b"protocol=https\nhost=h\n\n"[..],
                    &mut out,
                )
                .unwrap();
                String::from_utf8(out).unwrap()
            })
        };
        let asked = tokio::select! {
            _ = socket.serve(me, &token) => unreachable!(),
            answer = ask(path.clone(), "get") => answer.unwrap(),
        };
        assert_eq!(asked, "username=x-access-token\npassword=tok-0123456789\n");
        let stored = tokio::select! {
            _ = socket.serve(me, &token) => unreachable!(),
            answer = ask(path.clone(), "store") => answer.unwrap(),
        };
        assert_eq!(stored, "");
        let refused = tokio::select! {
            _ = socket.serve(u32::MAX, &token) => unreachable!(),
            answer = ask(path.clone(), "get") => answer.unwrap(),
        };
        assert_eq!(refused, "");
        let dir = socket.dir.clone();
        drop(socket);
        assert!(!dir.exists());
        assert_eq!(ask(path, "get").await.unwrap(), "", "no socket, no answer");
    }

    #[test]
    fn the_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _context = runtime.enter();
        let socket = CredentialSocket::bind_in(parent.path()).unwrap();
        let mode = std::fs::metadata(&socket.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(CredentialSocket::bind_in(Path::new("/nonexistent/omoi")).is_err());
    }
}
