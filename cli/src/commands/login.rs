//! `herald login`: saves the connection settings in use as a profile, after
//! checking that the gateway accepts the token, so a typo is caught now
//! rather than on the next command.

use reqwest::Method;

use crate::client::Client;
use crate::config::{self, Profile, Settings};
use crate::error::CliError;
use crate::options::{Global, LoginArgs};

pub async fn run(global: &Global, mut settings: Settings, args: LoginArgs) -> Result<(), CliError> {
    if let Some(url) = args.url {
        settings.url = url;
    }
    let token = settings.token.clone().ok_or_else(|| CliError::usage("login needs --token (or HERALD_TOKEN)"))?;
    if !args.no_check {
        let client = Client::new(settings.clone())?;
        // Open to the admin and to tenant keys alike, and cheap.
        client.call(Method::GET, ["v1", "event-types"]).query("limit", "1").send().await?;
    }
    let path = config::profile_path(global)?;
    let profile = Profile { url: Some(settings.url.clone()), token: Some(token), tenant: settings.tenant.clone() };
    config::save_profile(&path, &global.profile, profile)?;
    crate::output::line(format!("saved profile {:?} for {} in {}", global.profile, settings.url, path.display()));
    Ok(())
}
