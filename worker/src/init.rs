//! The worker as PID 1 of its container: it starts the real worker as its child, erases its own
//! environment and closes its memory, then reaps every process that ends up in its care and
//! passes SIGTERM and SIGINT on, and exits as the worker did.
//!
//! A container's first process gets the sandbox's whole environment, secrets included, and an
//! init that keeps it (Docker's `docker-init`) shows it in `/proc/1/environ` to every command of
//! the same user. This init keeps nothing: by the time a command runs, its environment block is
//! zeroed and it is undumpable.

use std::io;
use std::process::Command;

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};

use crate::secrets;

/// Whether this process is the first of its PID namespace (a container's).
pub fn is_init() -> bool {
    rustix::process::getpid().is_init()
}

/// Runs the worker with this process's arguments and environment as its child and stays to
/// reap; returns the worker's exit code (128 + signal when a signal ended it).
pub fn run() -> io::Result<u8> {
    // Listening before the worker exists: a SIGTERM from then on waits for it, not lost.
    let signals = Signals::listen()?;
    let program = std::env::current_exe()?;
    // The child inherits the environment as it is: nothing here reads it.
    let child = Command::new(program)
        .args(std::env::args_os().skip(1))
        .spawn()?;
    let worker = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other("the worker has no process id"))?;
    secrets::seal(|_| false)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || signals.forward(worker))?;
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == worker => return Ok(exit_code(status)),
            // An orphan the agent's commands left behind, reaped.
            Ok(_) | Err(Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

fn exit_code(status: WaitStatus) -> u8 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

/// SIGTERM and SIGINT, caught from the moment they are created (PID 1 has no default action
/// for them, so uncaught they would be dropped).
struct Signals {
    runtime: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int) = {
            let _context = runtime.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            )
        };
        Ok(Signals { runtime, term, int })
    }

    /// Passes each signal on to the worker, for as long as this process lives.
    fn forward(self, worker: Pid) {
        let Signals {
            runtime,
            mut term,
            mut int,
        } = self;
        runtime.block_on(async move {
            loop {
                let passed = tokio::select! {
                    _ = term.recv() => Signal::TERM,
                    _ = int.recv() => Signal::INT,
                };
                let _ = rustix::process::kill_process(worker, passed);
            }
        });
    }
}
