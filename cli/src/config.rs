//! Connection settings: flags and environment (resolved by clap, flag
//! first) over a named profile in a JSON file under the user's config
//! directory, over the defaults.
//!
//! The file holds tokens, so it is written with mode 0600 in a 0700
//! directory and replaced through a temporary file, never left half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::options::Global;

pub const DEFAULT_URL: &str = "http://localhost:8080";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ProfileFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// What a command connects with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
    pub tenant: Option<String>,
    pub timeout: std::time::Duration,
}

/// The profile file: `--config`/`HERALD_CONFIG`, else `<config dir>/herald/profiles.json`.
pub fn profile_path(global: &Global) -> Result<PathBuf, CliError> {
    if let Some(path) = &global.config {
        return Ok(path.clone());
    }
    dirs::config_dir().map(|dir| dir.join("herald").join("profiles.json")).ok_or_else(|| CliError::Profile {
        path: "<config dir>".into(),
        reason: "this system has no user config directory; pass --config".into(),
    })
}

fn profile_error(path: &Path, reason: impl std::fmt::Display) -> CliError {
    CliError::Profile { path: path.display().to_string(), reason: reason.to_string() }
}

fn read_file(path: &Path) -> Result<ProfileFile, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| profile_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProfileFile::default()),
        Err(e) => Err(profile_error(path, e)),
    }
}

/// The profile named by `--profile`, or an empty one when there is none.
pub fn load_profile(global: &Global) -> Result<Profile, CliError> {
    let path = profile_path(global)?;
    Ok(read_file(&path)?.profiles.remove(&global.profile).unwrap_or_default())
}

/// Flag or environment first, then the profile, then the defaults.
pub fn resolve(global: &Global, profile: Profile) -> Settings {
    let Profile { url, token, tenant } = profile;
    Settings {
        url: global.url.clone().or(url).unwrap_or_else(|| DEFAULT_URL.to_owned()),
        token: global.token.clone().or(token),
        tenant: global.tenant.clone().or(tenant),
        timeout: std::time::Duration::from_secs(global.timeout.max(1)),
    }
}

/// Stores `profile` under `name`, keeping the file's other profiles.
pub fn save_profile(path: &Path, name: &str, profile: Profile) -> Result<(), CliError> {
    let mut file = read_file(path)?;
    file.profiles.insert(name.to_owned(), profile);
    let text = serde_json::to_vec_pretty(&file).map_err(|e| profile_error(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(|e| profile_error(dir, e))?;
    }
    let tmp = path.with_extension("json.tmp");
    write_private(&tmp, &text).map_err(|e| profile_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| profile_error(path, e))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // A file left over from an earlier run keeps its old mode; tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> Global {
        let mut argv = vec!["herald"];
        argv.extend_from_slice(args);
        argv.push("man");
        crate::args::Cli::try_parse_from(argv).unwrap().global
    }

    #[test]
    fn flags_win_over_the_profile_and_the_profile_over_defaults() {
        let profile = Profile { url: Some("http://p".into()), token: Some("pt".into()), tenant: None };
        let settings = resolve(&global(&["--url", "http://flag"]), profile.clone());
        assert_eq!(settings.url, "http://flag");
        assert_eq!(settings.token.as_deref(), Some("pt"));
        let settings = resolve(&global(&[]), Profile::default());
        assert_eq!(settings.url, DEFAULT_URL);
    }

    #[test]
    fn profiles_are_saved_privately_and_kept_side_by_side() {
        let dir = std::env::temp_dir().join(format!("herald-cli-config-{}", std::process::id()));
        let path = dir.join("nested").join("profiles.json");
        let a = Profile { url: Some("http://a".into()), token: Some("ta".into()), tenant: Some("acme".into()) };
        save_profile(&path, "default", a.clone()).unwrap();
        save_profile(&path, "other", Profile::default()).unwrap();
        let file = read_file(&path).unwrap();
        assert_eq!(file.profiles.get("default"), Some(&a));
        assert_eq!(file.profiles.len(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
