//! Standby mode's contract: the few variables a warm pool's standby worker starts with, read
//! and validated like the rest of the environment, and the environment it runs with once its
//! assignment arrives (its own, the standby variables removed, with the assignment's laid
//! over it).

use std::collections::BTreeMap;
use std::time::Duration;

use omoi_protocol::env as var;
use omoi_protocol::standby::Assignment;

use super::{Secret, http_url};
use crate::error::{Error, Result};

/// How long a standby worker waits for its assignment when `OMOI_STANDBY_IDLE_SECS` is unset.
pub const DEFAULT_IDLE_SECS: u64 = 600;
/// The longest `OMOI_STANDBY_IDLE_SECS` (a day).
const MAX_IDLE_SECS: u64 = 86_400;
/// The longest standby id (the coordinator's ids are UUIDs).
const MAX_ID_BYTES: usize = 128;

/// The variables a standby sandbox must not start with: they belong to an assignment, and a
/// standby holds no secret and no work until it is assigned.
const ASSIGNED_ONLY: [&str; 6] = [
    var::SANDBOX_ID,
    var::SANDBOX_TOKEN,
    var::SPEC_ID,
    var::TASK_ID,
    var::GIT_TOKEN,
    var::OMOIOS_PROJECT_ID,
];

/// Who a standby is: its own id and pool credential, or (in a pool whose sandboxes share one
/// template) the pool's registration credential, which enrolls its pod and answers the two.
#[derive(Debug, Clone)]
pub enum Identity {
    /// `OMOI_STANDBY_ID` and `OMOI_STANDBY_TOKEN`.
    Own { id: String, token: Secret },
    /// `OMOI_STANDBY_POOL`, `OMOI_STANDBY_POD`, `OMOI_STANDBY_POD_UID` and
    /// `OMOI_STANDBY_ENROLL_TOKEN`.
    Enroll {
        pool: String,
        pod: String,
        pod_uid: String,
        token: Secret,
    },
}

/// What a standby worker needs before its assignment.
#[derive(Debug, Clone)]
pub struct StandbyConfig {
    /// The coordinator's base URL, without a trailing slash.
    pub api_url: String,
    /// Its id and credential, or what enrolls it.
    pub identity: Identity,
    /// How long to wait for an assignment before exiting.
    pub idle_limit: Duration,
    /// The rest of the environment (the provider's `WORKSPACE`, `PATH`, `HOME`, …), which the
    /// assignment is laid over.
    base: Vec<(String, String)>,
}

impl StandbyConfig {
    /// The standby configuration when `OMOI_STANDBY_ID`, `OMOI_STANDBY_TOKEN` or
    /// `OMOI_STANDBY_ENROLL_TOKEN` is set, `None` when none is (the worker then runs from its
    /// environment as usual).
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Option<Self>> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let identity = match (
            get(var::STANDBY_ID),
            get(var::STANDBY_TOKEN),
            get(var::STANDBY_ENROLL_TOKEN),
        ) {
            (None, None, None) => return Ok(None),
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(Error::config(
                    var::STANDBY_ENROLL_TOKEN,
                    "not with OMOI_STANDBY_ID or OMOI_STANDBY_TOKEN (a standby enrolls, or has \
                     its own id, not both)",
                ));
            }
            (None, None, Some(token)) => enrolling(&get, token)?,
            (Some(_), None, None) => {
                return Err(Error::config(
                    var::STANDBY_TOKEN,
                    "required with OMOI_STANDBY_ID (the pool credential)",
                ));
            }
            (None, Some(_), None) => {
                return Err(Error::config(
                    var::STANDBY_ID,
                    "required with OMOI_STANDBY_TOKEN (the standby sandbox's id)",
                ));
            }
            (Some(id), Some(token), None) => {
                check_name(var::STANDBY_ID, id)?;
                check_token(var::STANDBY_TOKEN, token)?;
                Identity::Own {
                    id: id.to_string(),
                    token: Secret::new(token),
                }
            }
        };
        let Some(url) = get(var::OMOIOS_API_URL) else {
            return Err(Error::config(
                var::OMOIOS_API_URL,
                "required in standby mode (the coordinator that assigns the sandbox)",
            ));
        };
        let api_url = http_url(var::OMOIOS_API_URL, url)?;
        if let Some(name) = ASSIGNED_ONLY.iter().find(|name| get(name).is_some()) {
            return Err(Error::config(
                *name,
                "must not be set in standby mode: it arrives with the assignment",
            ));
        }
        let idle_limit = match get(var::STANDBY_IDLE_SECS) {
            None => DEFAULT_IDLE_SECS,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(secs) if (1..=MAX_IDLE_SECS).contains(&secs) => secs,
                _ => {
                    return Err(Error::config(
                        var::STANDBY_IDLE_SECS,
                        format!("{text:?} is not a number of seconds from 1 to {MAX_IDLE_SECS}"),
                    ));
                }
            },
        };
        let base = vars
            .iter()
            .filter(|(name, _)| !is_standby_variable(name))
            .cloned()
            .collect();
        Ok(Some(StandbyConfig {
            api_url,
            identity,
            idle_limit: Duration::from_secs(idle_limit),
            base,
        }))
    }

    /// The environment of the assigned run: this worker's own variables without the standby
    /// ones, with the assignment's laid over them. An assignment that names a standby variable
    /// or `WORKSPACE` (the provider's, where the repository was put) is refused.
    pub fn assigned_vars(&self, assignment: Assignment) -> Result<Vec<(String, String)>> {
        if let Some(name) = assignment
            .env
            .keys()
            .find(|name| is_standby_variable(name) || *name == var::WORKSPACE)
        {
            return Err(Error::config(
                name.as_str(),
                "the assignment may not set it (the standby sandbox's own value stands)",
            ));
        }
        if let Some(name) = assignment
            .env
            .keys()
            .find(|name| name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(Error::config(
                name.as_str(),
                "the assignment names a variable no environment can hold",
            ));
        }
        let mut vars: BTreeMap<String, String> = self.base.iter().cloned().collect();
        vars.extend(assignment.env);
        Ok(vars.into_iter().collect())
    }
}

/// The variables of standby mode: none survives into the assigned run, and no assignment may
/// set one.
const STANDBY_VARIABLES: [&str; 7] = [
    var::STANDBY_ID,
    var::STANDBY_TOKEN,
    var::STANDBY_IDLE_SECS,
    var::STANDBY_ENROLL_TOKEN,
    var::STANDBY_POOL,
    var::STANDBY_POD,
    var::STANDBY_POD_UID,
];

fn is_standby_variable(name: &str) -> bool {
    STANDBY_VARIABLES.contains(&name)
}

/// The identity of an enrolling standby: its pool, pod and pod uid, all required with the
/// registration credential.
fn enrolling<'a>(get: &impl Fn(&str) -> Option<&'a str>, token: &str) -> Result<Identity> {
    check_token(var::STANDBY_ENROLL_TOKEN, token)?;
    let required = |name: &'static str| {
        let value = get(name)
            .ok_or_else(|| Error::config(name, "required with OMOI_STANDBY_ENROLL_TOKEN"))?;
        check_name(name, value)?;
        Ok::<String, Error>(value.to_string())
    };
    Ok(Identity::Enroll {
        pool: required(var::STANDBY_POOL)?,
        pod: required(var::STANDBY_POD)?,
        pod_uid: required(var::STANDBY_POD_UID)?,
        token: Secret::new(token),
    })
}

/// Refuses a value that is not a plain name (an id, a pod's name or uid).
fn check_name(name: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > MAX_ID_BYTES
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Error::config(
            name,
            format!(
                "{value:?} is not a plain name (letters, digits, '-', '_', '.', at most \
                 {MAX_ID_BYTES} bytes)"
            ),
        ));
    }
    Ok(())
}

/// Refuses a credential that cannot be a bearer token.
fn check_token(name: &str, token: &str) -> Result<()> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::config(
            name,
            "empty, or holds characters a bearer token cannot",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn standby_vars() -> Vec<(String, String)> {
        vars(&[
            ("OMOI_STANDBY_ID", "sb-1"),
            ("OMOI_STANDBY_TOKEN", "omoi_p_abc"),
            ("OMOIOS_API_URL", "http://10.0.0.1:8080/"),
            ("WORKSPACE", "/work/repo"),
            ("PATH", "/bin"),
        ])
    }

    fn error_of(pairs: Vec<(String, String)>) -> String {
        StandbyConfig::from_vars(pairs).unwrap_err().to_string()
    }

    #[test]
    fn without_the_standby_variables_there_is_no_standby() {
        assert!(
            StandbyConfig::from_vars(vars(&[("SPEC_ID", "s")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_standby_reads_its_variables_and_keeps_the_rest_as_its_base() {
        let config = StandbyConfig::from_vars(standby_vars()).unwrap().unwrap();
        assert_eq!(config.api_url, "http://10.0.0.1:8080");
        let Identity::Own { id, token } = &config.identity else {
            panic!("not its own identity: {:?}", config.identity);
        };
        assert_eq!(id, "sb-1");
        assert_eq!(token.expose(), "omoi_p_abc");
        assert_eq!(config.idle_limit, Duration::from_secs(DEFAULT_IDLE_SECS));
        assert_eq!(format!("{token:?}"), "<redacted>");
        let assignment = Assignment {
            env: BTreeMap::from([
                ("SANDBOX_ID".to_string(), "sx".to_string()),
                ("SANDBOX_TOKEN".to_string(), "omoi_s_x".to_string()),
                ("PATH".to_string(), "/usr/bin".to_string()),
            ]),
        };
        assert_eq!(
            config.assigned_vars(assignment).unwrap(),
            vars(&[
                ("OMOIOS_API_URL", "http://10.0.0.1:8080/"),
                ("PATH", "/usr/bin"),
                ("SANDBOX_ID", "sx"),
                ("SANDBOX_TOKEN", "omoi_s_x"),
                ("WORKSPACE", "/work/repo"),
            ])
        );
    }

    #[test]
    fn bad_standby_variables_are_named() {
        let mut only_id = standby_vars();
        only_id.retain(|(n, _)| n != "OMOI_STANDBY_TOKEN");
        assert_eq!(
            error_of(only_id),
            "OMOI_STANDBY_TOKEN: required with OMOI_STANDBY_ID (the pool credential)"
        );
        let mut only_token = standby_vars();
        only_token.retain(|(n, _)| n != "OMOI_STANDBY_ID");
        assert_eq!(
            error_of(only_token),
            "OMOI_STANDBY_ID: required with OMOI_STANDBY_TOKEN (the standby sandbox's id)"
        );
        let mut bad_id = standby_vars();
        bad_id[0].1 = "../x".into();
        assert!(error_of(bad_id).starts_with("OMOI_STANDBY_ID: \"../x\" is not a plain name"),);
        let mut bad_token = standby_vars();
        bad_token[1].1 = "a b".into();
        assert_eq!(
            error_of(bad_token),
            "OMOI_STANDBY_TOKEN: empty, or holds characters a bearer token cannot"
        );
        let mut no_url = standby_vars();
        no_url.retain(|(n, _)| n != "OMOIOS_API_URL");
        assert_eq!(
            error_of(no_url),
            "OMOIOS_API_URL: required in standby mode (the coordinator that assigns the sandbox)"
        );
        let mut bad_url = standby_vars();
        bad_url[2].1 = "ftp://x".into();
        assert_eq!(
            error_of(bad_url),
            "OMOIOS_API_URL: \"ftp://x\" is not an http:// or https:// URL"
        );
        for idle in ["0", "x", "86401", "-1"] {
            let mut bad_idle = standby_vars();
            bad_idle.push(("OMOI_STANDBY_IDLE_SECS".into(), idle.into()));
            assert_eq!(
                error_of(bad_idle),
                format!(
                    "OMOI_STANDBY_IDLE_SECS: {idle:?} is not a number of seconds from 1 to 86400"
                )
            );
        }
    }

    #[test]
    fn a_standby_holds_no_secret_or_work_before_its_assignment() {
        for name in ASSIGNED_ONLY {
            let mut with = standby_vars();
            with.push((name.to_string(), "x".into()));
            assert_eq!(
                error_of(with),
                format!("{name}: must not be set in standby mode: it arrives with the assignment")
            );
        }
    }

    #[test]
    fn an_assignment_cannot_move_the_workspace_or_name_the_standby_variables() {
        let config = StandbyConfig::from_vars(standby_vars()).unwrap().unwrap();
        for name in ["WORKSPACE", "OMOI_STANDBY_TOKEN", "OMOI_STANDBY_ID"] {
            let assignment = Assignment {
                env: BTreeMap::from([(name.to_string(), "x".to_string())]),
            };
            assert_eq!(
                config.assigned_vars(assignment).unwrap_err().to_string(),
                format!(
                    "{name}: the assignment may not set it (the standby sandbox's own value stands)"
                )
            );
        }
        let assignment = Assignment {
            env: BTreeMap::from([("A=B".to_string(), "x".to_string())]),
        };
        assert_eq!(
            config.assigned_vars(assignment).unwrap_err().to_string(),
            "A=B: the assignment names a variable no environment can hold"
        );
    }

    fn enrolling_vars() -> Vec<(String, String)> {
        vars(&[
            ("OMOI_STANDBY_ENROLL_TOKEN", "omoi_r_abc"),
            ("OMOI_STANDBY_POOL", "omoi-default-x1"),
            ("OMOI_STANDBY_POD", "omoi-default-x1-abcde"),
            ("OMOI_STANDBY_POD_UID", "0f3c-11"),
            ("OMOIOS_API_URL", "http://10.0.0.1:8080"),
            ("WORKSPACE", "/workspace"),
        ])
    }

    #[test]
    fn an_enrolling_standby_reads_its_pool_and_pod_and_keeps_none_of_them() {
        let config = StandbyConfig::from_vars(enrolling_vars()).unwrap().unwrap();
        let Identity::Enroll {
            pool,
            pod,
            pod_uid,
            token,
        } = &config.identity
        else {
            panic!("not enrolling: {:?}", config.identity);
        };
        assert_eq!(
            (pool.as_str(), pod.as_str(), pod_uid.as_str()),
            ("omoi-default-x1", "omoi-default-x1-abcde", "0f3c-11")
        );
        assert_eq!(token.expose(), "omoi_r_abc");
        let assigned = config
            .assigned_vars(Assignment {
                env: BTreeMap::from([("SANDBOX_ID".to_string(), "sx".to_string())]),
            })
            .unwrap();
        assert_eq!(
            assigned,
            vars(&[
                ("OMOIOS_API_URL", "http://10.0.0.1:8080"),
                ("SANDBOX_ID", "sx"),
                ("WORKSPACE", "/workspace"),
            ])
        );
        for name in [
            "OMOI_STANDBY_ENROLL_TOKEN",
            "OMOI_STANDBY_POD",
            "OMOI_STANDBY_POOL",
        ] {
            let assignment = Assignment {
                env: BTreeMap::from([(name.to_string(), "x".to_string())]),
            };
            assert!(config.assigned_vars(assignment).is_err(), "{name}");
        }
    }

    #[test]
    fn bad_enrolling_variables_are_named() {
        for missing in [
            "OMOI_STANDBY_POOL",
            "OMOI_STANDBY_POD",
            "OMOI_STANDBY_POD_UID",
        ] {
            let mut without = enrolling_vars();
            without.retain(|(n, _)| n != missing);
            assert_eq!(
                error_of(without),
                format!("{missing}: required with OMOI_STANDBY_ENROLL_TOKEN")
            );
        }
        let mut bad_pod = enrolling_vars();
        bad_pod[2].1 = "a/b".into();
        assert!(error_of(bad_pod).starts_with("OMOI_STANDBY_POD: \"a/b\" is not a plain name"));
        let mut bad_token = enrolling_vars();
        bad_token[0].1 = String::new();
        assert_eq!(
            error_of(bad_token),
            "OMOI_STANDBY_ENROLL_TOKEN: empty, or holds characters a bearer token cannot"
        );
        let mut both = enrolling_vars();
        both.push(("OMOI_STANDBY_ID".into(), "sb-1".into()));
        assert!(error_of(both).starts_with("OMOI_STANDBY_ENROLL_TOKEN: not with OMOI_STANDBY_ID"));
        let mut assigned_only = enrolling_vars();
        assigned_only.push(("SANDBOX_TOKEN".into(), "x".into()));
        assert_eq!(
            error_of(assigned_only),
            "SANDBOX_TOKEN: must not be set in standby mode: it arrives with the assignment"
        );
    }
}
