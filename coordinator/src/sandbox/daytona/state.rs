//! What a Daytona sandbox state (`SandboxState` of the API) and the worker's exit file mean for
//! omoi: the states on the way to `started`, `started` itself, the states in which the sandbox no
//! longer runs (stopped, archived, paused, failed), and its end (`destroyed`).

use crate::sandbox::ProviderStatus;

/// A sandbox state as the provider acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// On its way to `started`: `creating`, `starting`, `restoring`, `pulling_snapshot`,
    /// `pending_build`, `building_snapshot`, `resizing`, `snapshotting`, `forking`, `resuming`,
    /// `unknown`, or no state yet.
    Starting,
    /// `started`: the toolbox answers.
    Started,
    /// No longer running, with the state: `stopping`, `stopped`, `archiving`, `archived`,
    /// `pausing`, `paused`.
    Halted(String),
    /// `error` or `build_failed`.
    Failed(String),
    /// `destroying` or `destroyed`.
    Destroyed,
}

/// The phase of `state` (a state this build does not know counts as starting: the API adds
/// states, and the spawn deadline bounds the wait).
pub fn phase(state: Option<&str>) -> Phase {
    match state {
        Some("started") => Phase::Started,
        Some(s @ ("stopping" | "stopped" | "archiving" | "archived" | "pausing" | "paused")) => {
            Phase::Halted(s.to_string())
        }
        Some(s @ ("error" | "build_failed")) => Phase::Failed(s.to_string()),
        Some("destroying" | "destroyed") => Phase::Destroyed,
        _ => Phase::Starting,
    }
}

/// The status of a sandbox in a phase other than started (whose worker decides), or `None`.
pub fn status_of(phase: &Phase, error_reason: Option<&str>) -> Option<ProviderStatus> {
    let reason = match phase {
        Phase::Starting | Phase::Started => return None,
        Phase::Halted(state) => format!("was {state} by Daytona before the worker ended"),
        Phase::Failed(state) => format!(
            "failed in Daytona ({state}){}",
            error_reason.map(|r| format!(": {r}")).unwrap_or_default()
        ),
        Phase::Destroyed => "was destroyed before the worker ended".to_string(),
    };
    Some(ProviderStatus::Lost { reason })
}

/// What the worker's run directory says (the answer of [`super::launch::CHECK`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Worker {
    /// Launched and running.
    Running,
    /// Ended with this exit code (`None`: the file did not hold a number).
    Exited(Option<i32>),
    /// Never launched in this sandbox.
    Absent,
}

/// Reads the answer of the check command.
pub fn worker(output: &str) -> Worker {
    match output.trim() {
        "running" => Worker::Running,
        "absent" | "" => Worker::Absent,
        code => Worker::Exited(code.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn every_state_of_the_api_has_a_phase() {
        for (state, want) in [
            (Some("started"), Phase::Started),
            (Some("creating"), Phase::Starting),
            (Some("pulling_snapshot"), Phase::Starting),
            (Some("resuming"), Phase::Starting),
            (Some("a_state_added_later"), Phase::Starting),
            (None, Phase::Starting),
            (Some("stopped"), Phase::Halted("stopped".into())),
            (Some("archived"), Phase::Halted("archived".into())),
            (Some("paused"), Phase::Halted("paused".into())),
            (Some("error"), Phase::Failed("error".into())),
            (Some("build_failed"), Phase::Failed("build_failed".into())),
            (Some("destroying"), Phase::Destroyed),
            (Some("destroyed"), Phase::Destroyed),
        ] {
            assert_eq!(phase(state), want, "{state:?}");
        }
    }

    #[test]
    fn ended_phases_are_lost_with_the_reason() {
        assert_eq!(status_of(&Phase::Started, None), None);
        assert_eq!(
            status_of(&Phase::Failed("error".into()), Some("runner went away")),
            Some(ProviderStatus::Lost {
                reason: "failed in Daytona (error): runner went away".into()
            })
        );
        assert_eq!(
            status_of(&Phase::Halted("stopped".into()), None),
            Some(ProviderStatus::Lost {
                reason: "was stopped by Daytona before the worker ended".into()
            })
        );
        assert_eq!(
            status_of(&Phase::Destroyed, None),
            Some(ProviderStatus::Lost {
                reason: "was destroyed before the worker ended".into()
            })
        );
    }

    #[test]
    fn the_check_answer_reads_as_the_workers_state() {
        assert_eq!(worker("running\n"), Worker::Running);
        assert_eq!(worker("0\n"), Worker::Exited(Some(0)));
        assert_eq!(worker("137"), Worker::Exited(Some(137)));
        assert_eq!(worker("garbage"), Worker::Exited(None));
        assert_eq!(worker("absent\n"), Worker::Absent);
    }
}
