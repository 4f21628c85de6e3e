//! The shipped event type catalogue (`deploy/catalog/*.json`), loaded at
//! start-up when `HERALD_CATALOG_DIR` names it.
//!
//! The operational event types (`catalog/operational.json`, built into the
//! binary) are loaded the same way at every start, whatever the directory.
//!
//! Loading is an upsert: a missing type is created, an existing one is
//! brought to the file's description, schema and code, and an identical one
//! is left alone. Several registries starting together converge on the same
//! catalogue, and restarting changes nothing.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::Registry;
use crate::error::{RegistryError, Result};
use crate::event_types::EventTypeInput;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CatalogFile {
    event_types: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    code: Option<i64>,
}

/// What a load did, for the start-up log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatalogReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

fn catalog_error(path: &Path, detail: impl std::fmt::Display) -> RegistryError {
    RegistryError::Catalog(format!("{}: {detail}", path.display()))
}

/// The operational event types every installation has.
const OPERATIONAL: &str = include_str!("../catalog/operational.json");

impl Registry {
    /// Loads the built-in operational event types.
    pub async fn load_operational_types(&self) -> Result<CatalogReport> {
        let mut report = CatalogReport::default();
        self.load_catalog_file(Path::new("operational.json"), OPERATIONAL.as_bytes(), &mut report).await?;
        Ok(report)
    }

    /// Loads every `*.json` file of `dir`, in name order.
    pub async fn load_catalog(&self, dir: &Path) -> Result<CatalogReport> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| catalog_error(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        let mut report = CatalogReport::default();
        for path in files {
            let text = std::fs::read(&path).map_err(|e| catalog_error(&path, e))?;
            self.load_catalog_file(&path, &text, &mut report).await?;
        }
        Ok(report)
    }

    async fn load_catalog_file(&self, path: &Path, text: &[u8], report: &mut CatalogReport) -> Result<()> {
        let file: CatalogFile = serde_json::from_slice(text).map_err(|e| catalog_error(path, e))?;
        for entry in file.event_types {
            self.upsert_catalog_entry(path, entry, report).await?;
        }
        Ok(())
    }

    async fn upsert_catalog_entry(&self, path: &Path, entry: CatalogEntry, report: &mut CatalogReport) -> Result<()> {
        let schema = entry.schema.as_ref().map(|s| s.to_string().into_bytes()).unwrap_or_default();
        let input = EventTypeInput::parse(entry.name.clone(), entry.description, &schema, entry.code)
            .map_err(|e| catalog_error(path, format!("event type {}: {e}", entry.name)))?;
        match self.event_type_by_name(&input.name).await {
            Ok(current)
                if current.description == input.description
                    && current.schema == input.schema
                    && current.code == input.code =>
            {
                report.unchanged += 1;
            }
            Ok(_) => {
                self.update_event_type(input).await?;
                report.updated += 1;
            }
            Err(RegistryError::NotFound(_)) => match self.create_event_type(input).await {
                Ok(_) => report.created += 1,
                // Another registry created it a moment ago; its content is the same file's.
                Err(RegistryError::AlreadyExists(_)) => report.unchanged += 1,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
        Ok(())
    }
}
