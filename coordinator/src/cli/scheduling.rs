//! The flags of `omoi serve` that shape how bridged tasks run: limits on running tasks, attempts
//! per task and the backoff between them.

use std::time::Duration;

use clap::Args;

use super::{CliError, CliResult};
use crate::app::Settings;

/// How the scheduler runs tasks.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TaskArgs {
    /// Tasks running at once over all projects (0: this coordinator starts no task).
    #[arg(long, env = "OMOI_MAX_RUNNING_TASKS", default_value_t = 8)]
    pub max_running_tasks: u32,
    /// Tasks of one project running at once.
    #[arg(long, env = "OMOI_MAX_RUNNING_TASKS_PER_PROJECT", default_value_t = 4)]
    pub max_running_tasks_per_project: u32,
    /// Attempts a task gets before its spec fails (counted per task, lost sandboxes included).
    #[arg(long, env = "OMOI_TASK_ATTEMPTS", default_value_t = 3)]
    pub task_attempts: u32,
    /// Seconds before a failed task's second attempt; doubles for each further one (at most 300).
    #[arg(long, env = "OMOI_TASK_RETRY_SECS", default_value_t = 10)]
    pub task_retry_secs: u64,
}

impl TaskArgs {
    /// Checks the flags and sets them on `settings`.
    pub fn apply(&self, settings: &mut Settings) -> CliResult<()> {
        if self.task_attempts == 0 {
            return Err(CliError::Config(
                "--task-attempts must be at least 1".into(),
            ));
        }
        settings.max_running_tasks = self.max_running_tasks;
        settings.max_running_tasks_per_project = self.max_running_tasks_per_project;
        settings.task_policy.max_attempts = self.task_attempts;
        settings.task_policy.retry_base = Duration::from_secs(self.task_retry_secs);
        settings.task_policy.retry_cap =
            Duration::from_secs(300).max(settings.task_policy.retry_base);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_flags_set_limits_and_the_retry_policy_and_refuse_zero_attempts() {
        let mut settings = Settings::new("http://127.0.0.1:8080");
        TaskArgs {
            max_running_tasks: 2,
            max_running_tasks_per_project: 1,
            task_attempts: 5,
            task_retry_secs: 1,
        }
        .apply(&mut settings)
        .unwrap();
        assert_eq!(
            (
                settings.max_running_tasks,
                settings.max_running_tasks_per_project,
                settings.task_policy.max_attempts,
                settings.task_policy.retry_base,
            ),
            (2, 1, 5, Duration::from_secs(1))
        );
        let zero = TaskArgs {
            max_running_tasks: 2,
            max_running_tasks_per_project: 1,
            task_attempts: 0,
            task_retry_secs: 1,
        };
        assert_eq!(
            zero.apply(&mut settings).unwrap_err().to_string(),
            "--task-attempts must be at least 1"
        );
    }
}
