//! What a valid configuration still needs at start: every secret (`{ env: NAME }`,
//! `{ file: PATH }`) and every file it names. `warden check-config --resolve` and `warden run`
//! (before it starts anything) report all of them at once, so that an operator does not find
//! one missing variable per restart. Messages name the variable or file, never a value.
//!
//! The YAML is walked as data rather than through the typed configuration, so that a secret
//! or file key added to the schema is covered without a change here: a mapping whose only key
//! is `env` or `file` is a secret reference (the schema allows that form nowhere else), and
//! the keys in [`FILE_KEYS`] name files that must be readable.

use std::path::Path;

use crate::config::SecretRef;
use serde::Serialize;
use serde_yaml::Value;

/// Keys whose string value is a file Warden reads at start.
const FILE_KEYS: &[&str] = &["ca_file", "kubeconfig", "tokenizer"];

/// The service account token a pod gets (`kubernetes.in_cluster: true`).
const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// One reference that does not resolve, at its YAML path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    pub path: String,
    pub problem: String,
}

/// Every reference of the configuration text that does not resolve now, in file order.
pub fn unresolved(text: &str) -> Vec<Unresolved> {
    let mut out = Vec::new();
    match serde_yaml::from_str::<Value>(text) {
        Ok(root) => {
            walk(&root, "", &mut out);
            in_cluster(&root, &mut out);
        }
        // The configuration was validated before; this is only reached on a race.
        Err(e) => out.push(Unresolved { path: String::new(), problem: format!("not YAML: {e}") }),
    }
    out
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(value: &Value, path: &str, out: &mut Vec<Unresolved>) {
    match value {
        Value::Mapping(map) => {
            if let Some(secret) = secret_ref(map) {
                if let Err(problem) = secret.resolve() {
                    out.push(Unresolved { path: path.to_string(), problem });
                }
                return;
            }
            for (k, v) in map {
                let Some(key) = k.as_str() else { continue };
                let here = child(path, key);
                let file_key = FILE_KEYS.contains(&key) || here == "analysis.model.path";
                match v {
                    Value::String(file) if file_key => {
                        if let Err(e) = std::fs::File::open(Path::new(file)) {
                            out.push(Unresolved { path: here, problem: format!("cannot read {file}: {e}") });
                        }
                    }
                    _ => walk(v, &here, out),
                }
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, path, out),
        _ => {}
    }
}

/// `{ env: NAME }` or `{ file: PATH }`: a mapping with that one key and a string value.
fn secret_ref(map: &serde_yaml::Mapping) -> Option<SecretRef> {
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    let value = v.as_str()?;
    match k.as_str()? {
        "env" => Some(SecretRef { env: Some(value.to_string()), file: None }),
        "file" => Some(SecretRef { env: None, file: Some(value.into()) }),
        _ => None,
    }
}

fn in_cluster(root: &Value, out: &mut Vec<Unresolved>) {
    if root.get("kubernetes").and_then(|k| k.get("in_cluster")).and_then(Value::as_bool) != Some(true) {
        return;
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        out.push(Unresolved {
            path: "kubernetes.in_cluster".into(),
            problem: "KUBERNETES_SERVICE_HOST is not set (not running in a pod?)".into(),
        });
    }
    if let Err(e) = std::fs::File::open(IN_CLUSTER_TOKEN) {
        out.push(Unresolved {
            path: "kubernetes.in_cluster".into(),
            problem: format!("cannot read the service account token {IN_CLUSTER_TOKEN}: {e}"),
        });
    }
}

/// `N unresolved reference(s) in FILE:` and one indented line per problem, as
/// `warden check-config --resolve` and `warden run` report them.
pub fn describe(file: &Path, problems: &[Unresolved]) -> String {
    let mut text = format!("{} unresolved reference(s) in {}:", problems.len(), file.display());
    for p in problems {
        text += &format!("\n  {}: {}", p.path, p.problem);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_secret_and_file_is_reported_at_once_without_values() {
        let dir = tempfile::tempdir().expect("dir");
        let present = dir.path().join("token");
        std::fs::write(&present, "s3cr3t-value\n").expect("write");
        let text = format!(
            "prometheus:\n  url: http://127.0.0.1:9090\n  auth: {{ bearer: {{ env: WARDEN_TEST_UNSET_VAR_1 }} }}\n  tls: {{ ca_file: {missing_ca} }}\n\
             server:\n  api_token: {{ file: {present} }}\n  viewer_token: {{ file: {missing} }}\n\
             notify:\n  slack: {{ webhook_url: {{ env: WARDEN_TEST_UNSET_VAR_2 }} }}\n  file: {{ path: /tmp/notifications.jsonl }}\n",
            missing_ca = dir.path().join("ca.pem").display(),
            present = present.display(),
            missing = dir.path().join("viewer").display(),
        );
        let problems = unresolved(&text);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["prometheus.auth.bearer", "prometheus.tls.ca_file", "server.viewer_token", "notify.slack.webhook_url"],
            "{problems:?}"
        );
        assert!(problems[0].problem.contains("WARDEN_TEST_UNSET_VAR_1"), "{problems:?}");
        let text = describe(Path::new("w.yaml"), &problems);
        assert!(text.starts_with("4 unresolved reference(s) in w.yaml:\n  prometheus.auth.bearer: "), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn a_config_whose_references_resolve_has_no_problems() {
        let text =
            "store: { sqlite: /tmp/x.db }\nserver: { listen: 127.0.0.1:8080 }\nwatches:\n  - name: a\n    query: up\n";
        assert!(unresolved(text).is_empty());
    }
}
