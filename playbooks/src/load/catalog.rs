//! The catalog: the playbooks a daemon serves, built-ins replaced or extended by files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{load_dir, parse_playbook, LoadErrors};
use crate::spec::Playbook;

/// Where a playbook of the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum Source {
    /// Shipped with Warden ([`crate::builtin`]).
    Builtin,
    /// A file of the playbook directory (replacing a built-in of the same name, if any).
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("built-in"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One playbook of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub playbook: Playbook,
    pub source: Source,
}

/// The playbooks a daemon serves, by name: the built-ins, replaced or extended by the files
/// of the playbook directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl Catalog {
    /// The built-ins plus the playbooks of `dir` (when given). A file defining a built-in's
    /// name replaces the built-in; all errors of all files are reported together.
    pub fn load(dir: Option<&Path>) -> Result<Catalog, LoadErrors> {
        let mut catalog = Self::builtin()?;
        if let Some(dir) = dir {
            for (path, playbook) in load_dir(dir)? {
                catalog.insert(playbook, Source::File(path));
            }
        }
        Ok(catalog)
    }

    /// Only the built-in playbooks.
    pub fn builtin() -> Result<Catalog, LoadErrors> {
        let mut catalog = Catalog::default();
        let mut errors = Vec::new();
        for (file, text) in crate::builtin::builtins() {
            match parse_playbook(text, &Path::new("builtin").join(file)) {
                Ok(p) => catalog.insert(p, Source::Builtin),
                Err(LoadErrors(mut e)) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Add or replace a playbook (checked by the caller).
    pub fn insert(&mut self, playbook: Playbook, source: Source) {
        self.entries.insert(playbook.name.clone(), CatalogEntry { playbook, source });
    }

    pub fn get(&self, name: &str) -> Option<&Playbook> {
        self.entries.get(name).map(|e| &e.playbook)
    }

    pub fn entry(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.entries.get(name).map(|e| &e.source)
    }

    /// Every playbook, by name.
    pub fn iter(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
