//! What the fake API server refuses, as the real one does: bodies that do not decode into the
//! official types (k8s-openapi), unknown fields (strict field validation), missing required
//! fields, names that are not DNS names, bad labels, and the checks of each kind it serves.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A refusal: the HTTP status and the message of the `Status` the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn bad_request(message: String) -> Refusal {
        Refusal {
            code: 400,
            reason: "BadRequest",
            message,
        }
    }

    pub fn invalid(kind: &str, name: &str, problems: &[String]) -> Refusal {
        Refusal {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} {name:?} is invalid: {}", problems.join(", ")),
        }
    }
}

/// Decodes `body` into `T` and refuses any field `T` does not have (what `fieldValidation=Strict`
/// answers; the fake is always strict).
pub fn strict<T: DeserializeOwned + Serialize>(body: &Value) -> Result<T, Refusal> {
    let typed: T = serde_json::from_value(body.clone())
        .map_err(|e| Refusal::bad_request(format!("error decoding the object: {e}")))?;
    let back = serde_json::to_value(&typed)
        .map_err(|e| Refusal::bad_request(format!("error encoding the object: {e}")))?;
    let mut unknown = Vec::new();
    unknown_fields(body, &back, "", &mut unknown);
    if unknown.is_empty() {
        Ok(typed)
    } else {
        let listed: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        Err(Refusal::bad_request(format!(
            "strict decoding error: {}",
            listed.join(", ")
        )))
    }
}

/// The paths of `sent` that the typed round trip `kept` dropped.
fn unknown_fields(sent: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(sent), Value::Object(kept)) => {
            for (key, value) in sent {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    None if value.is_null() => {}
                    None => out.push(here),
                    Some(kept) => unknown_fields(value, kept, &here, out),
                }
            }
        }
        (Value::Array(sent), Value::Array(kept)) => {
            for (i, (sent, kept)) in sent.iter().zip(kept).enumerate() {
                unknown_fields(sent, kept, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A DNS label (RFC 1123): 1–63 of a-z, 0-9, '-', alphanumeric at both ends.
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A DNS subdomain (RFC 1123): dot-separated labels, at most 253 characters (pod and Secret names).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name.
pub fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    }
}

pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// An environment variable name as the API server accepts it.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A quantity such as `512Mi`, `2`, `1500m`, `1.5Gi`.
pub fn is_quantity(value: &str) -> bool {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &value[digits.len()..];
    !digits.is_empty()
        && digits
            .parse::<f64>()
            .is_ok_and(|n| n >= 0.0 && n.is_finite())
        && ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
}

/// The metadata checks every kind shares: a name that is a DNS subdomain, the namespace of the
/// path, labels that are labels.
pub fn metadata(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespace: &str,
    problems: &mut Vec<String>,
) {
    match meta.name.as_deref() {
        None | Some("") => problems.push("metadata.name: Required value: name is required".into()),
        Some(name) if !is_dns_subdomain(name) => problems.push(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist \
             of lower case alphanumeric characters, '-' or '.'"
        )),
        Some(_) => {}
    }
    if let Some(ns) = meta.namespace.as_deref() {
        if ns != namespace {
            problems.push(format!(
                "metadata.namespace: Invalid value: {ns:?}: does not match the namespace of the \
                 request ({namespace:?})"
            ));
        }
    }
    for (key, value) in meta.labels.iter().flatten() {
        if !is_label_key(key) {
            problems.push(format!(
                "metadata.labels: Invalid value: {key:?}: not a label key"
            ));
        }
        if !is_label_value(value) {
            problems.push(format!(
                "metadata.labels: Invalid value: {value:?}: not a label value"
            ));
        }
    }
}

/// A Pod's own checks (the ones an omoi pod could get wrong).
pub fn pod(pod: &k8s_openapi::api::core::v1::Pod, problems: &mut Vec<String>) {
    let Some(spec) = &pod.spec else {
        problems.push("spec: Required value".into());
        return;
    };
    if spec.containers.is_empty() {
        problems.push("spec.containers: Required value".into());
    }
    if let Some(policy) = &spec.restart_policy {
        if !["Always", "OnFailure", "Never"].contains(&policy.as_str()) {
            problems.push(format!("spec.restartPolicy: Unsupported value: {policy:?}"));
        }
    }
    if spec.active_deadline_seconds.is_some_and(|s| s <= 0) {
        problems.push("spec.activeDeadlineSeconds: must be greater than 0".into());
    }
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    for volume in &volumes {
        if !is_dns_label(volume) {
            problems.push(format!("spec.volumes: Invalid value: {volume:?}"));
        }
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let at = format!("spec.containers[{i}]");
        // k8s-openapi reads a missing required string as empty: the check is here.
        if c.name.is_empty() {
            problems.push(format!("{at}.name: Required value"));
        } else if !is_dns_label(&c.name) {
            problems.push(format!("{at}.name: Invalid value: {:?}", c.name));
        }
        if c.image.as_deref().is_none_or(str::is_empty) {
            problems.push(format!("{at}.image: Required value"));
        }
        for var in c.env.iter().flatten() {
            if !is_env_name(&var.name) {
                problems.push(format!("{at}.env.name: Invalid value: {:?}", var.name));
            }
        }
        for mount in c.volume_mounts.iter().flatten() {
            if !volumes.contains(&mount.name.as_str()) {
                problems.push(format!(
                    "{at}.volumeMounts.name: Not found: {:?}",
                    mount.name
                ));
            }
            if !mount.mount_path.starts_with('/') {
                problems.push(format!("{at}.volumeMounts.mountPath: must be absolute"));
            }
        }
        if let Some(resources) = &c.resources {
            for (name, q) in resources
                .limits
                .iter()
                .flatten()
                .chain(resources.requests.iter().flatten())
            {
                if !is_quantity(&q.0) {
                    problems.push(format!(
                        "{at}.resources.{name}: Invalid value: {:?}: quantities must match the \
                         regular expression",
                        q.0
                    ));
                }
            }
        }
    }
}

/// A Secret's own checks: its data keys.
pub fn secret(secret: &k8s_openapi::api::core::v1::Secret, problems: &mut Vec<String>) {
    for key in secret.data.iter().flatten().map(|(k, _)| k) {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if !valid {
            problems.push(format!(
                "data[{key}]: Invalid value: {key:?}: a valid config key must consist of \
                 alphanumeric characters, '-', '_' or '.'"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        let ok = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        assert!(strict::<Pod>(&ok).is_ok());
        let unknown = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}});
        assert_eq!(
            strict::<Pod>(&unknown).unwrap_err().message,
            "strict decoding error: unknown field \"spec.containers[0].bogus\""
        );
        let missing = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "i"}]}});
        let decoded = strict::<Pod>(&missing).unwrap();
        let mut problems = Vec::new();
        pod(&decoded, &mut problems);
        assert_eq!(
            problems,
            vec!["spec.containers[0].name: Required value".to_string()]
        );
        let mut problems = Vec::new();
        metadata(
            &strict::<Pod>(&json!({"metadata": {"name": "Bad_Name",
            "labels": {"a b": "c"}}, "spec": {"containers": []}}))
            .unwrap()
            .metadata,
            "ns",
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {}});
        assert_eq!(strict::<Pod>(&wrong_kind).unwrap_err().code, 400);
    }

    #[test]
    fn names_labels_and_quantities_follow_the_api_rules() {
        assert!(
            is_dns_subdomain("omoi-1.a") && !is_dns_subdomain("Omoi") && !is_dns_subdomain("a_b")
        );
        assert!(is_label_key("omoi.owner") && is_label_key("agents.x-k8s.io/name"));
        assert!(!is_label_key("a b") && !is_label_key("/x"));
        assert!(is_quantity("512Mi") && is_quantity("1500m") && is_quantity("2"));
        assert!(!is_quantity("lots") && !is_quantity("-1") && !is_quantity("1Zi"));
    }
}
