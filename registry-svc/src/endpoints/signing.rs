//! An endpoint's signing secret: read in plaintext (the one answer that
//! carries it) and rotated, the previous one signing on for a day.

use herald_common::endpoint_secrets as sealing;

use super::{ROTATION_OVERLAP_MS, new_signing_secret};
use crate::Registry;
use crate::error::{RegistryError, Result};

impl Registry {
    /// The current signing secret, in plaintext.
    pub async fn endpoint_secret(&self, tenant: &str, id: &str) -> Result<String> {
        let (record, _) = self.owned_endpoint(tenant, id).await?;
        let current = record.signing_secrets.first().ok_or_else(|| {
            RegistryError::Common(herald_common::CommonError::Config(format!("endpoint {id} has no signing secret")))
        })?;
        Ok(self.config.secrets.open(&current.secret, sealing::binding(id, sealing::SIGNING_SECRET))?)
    }

    /// A new signing secret goes first; the previous one keeps signing for 24 hours.
    pub async fn rotate_endpoint_secret(&self, tenant: &str, id: &str) -> Result<String> {
        let (_, secret) = self
            .modify_endpoint(tenant, id, |record, now| {
                let (secret, fresh) = new_signing_secret(self, &record.id);
                for old in &mut record.signing_secrets {
                    let until = now + ROTATION_OVERLAP_MS;
                    old.expires_at = Some(old.expires_at.map_or(until, |at| at.min(until)));
                }
                record.signing_secrets.insert(0, fresh);
                secret
            })
            .await?;
        tracing::info!(tenant = %tenant, endpoint = %id, "endpoint signing secret rotated");
        Ok(secret)
    }
}
