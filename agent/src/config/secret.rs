//! Secret references: the file names where a secret lives, never the secret.

use std::path::PathBuf;

use serde::Deserialize;

/// `{ env: NAME }` or `{ file: PATH }` (exactly one; checked by validation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Read the secret. Errors name the variable or file, never the value. A file's trailing
    /// newline is dropped (as written by `echo` or Kubernetes secret mounts).
    pub fn resolve(&self) -> Result<String, String> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("reading secret file {}: {e}", path.display())),
            _ => Err("a secret needs exactly one of `env` or `file`".into()),
        }
    }

    pub fn shape_error(&self) -> Option<String> {
        match (&self.env, &self.file) {
            (Some(_), None) | (None, Some(_)) => None,
            _ => Some("a secret needs exactly one of `env` or `file`".into()),
        }
    }
}
