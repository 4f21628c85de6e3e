//! The sealed values of an endpoint record and what each is sealed for.
//!
//! An endpoint holds its auth secret, its signing secrets and its custom
//! header values (which often carry API keys or cookies) sealed, each bound
//! to the endpoint's id and its slot ([`Binding`]). Header values written
//! before they were sealed are still plaintext in Redis: a value without the
//! sealed shape is read as it is and sealed by the next write of the record
//! ([`reseal`]), as are values sealed without a binding or under the
//! previous key.

use std::collections::BTreeMap;

use crate::Result;
use crate::crypto::{Binding, SecretBox, looks_sealed};
use crate::model::{EndpointRecord, Sealed, StoredAuth};

pub const PASSWORD: &str = "auth.password";
pub const TOKEN: &str = "auth.token";
pub const CLIENT_SECRET: &str = "auth.clientSecret";
pub const SIGNING_SECRET: &str = "signingSecrets";
pub const HEADER: &str = "headers";

/// What a value in `slot` of endpoint `id` is sealed for.
pub fn binding<'a>(id: &'a str, slot: &'static str) -> Binding<'a> {
    Binding { kind: "endpoint", id, slot }
}

/// Seals header values for endpoint `id`.
pub fn seal_headers(
    secrets: &SecretBox,
    id: &str,
    headers: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, Sealed> {
    headers.into_iter().map(|(name, value)| (name, secrets.seal(&value, binding(id, HEADER)))).collect()
}

/// The endpoint's header values in plaintext.
pub fn open_headers(secrets: &SecretBox, record: &EndpointRecord) -> Result<BTreeMap<String, String>> {
    record.headers.iter().map(|(name, value)| Ok((name.clone(), open_header(secrets, &record.id, value)?))).collect()
}

fn open_header(secrets: &SecretBox, id: &str, value: &Sealed) -> Result<String> {
    if looks_sealed(&value.0) { secrets.open(value, binding(id, HEADER)) } else { Ok(value.0.clone()) }
}

/// Seals again every value of `record` that is plaintext, unbound or under
/// the previous key. Answers whether anything changed.
pub fn reseal(secrets: &SecretBox, record: &mut EndpointRecord) -> bool {
    let id = record.id.clone();
    let mut changed = false;
    let mut renew = |value: &mut Sealed, slot: &'static str| {
        let fresh = if slot == HEADER && !looks_sealed(&value.0) {
            Some(secrets.seal(&value.0, binding(&id, slot)))
        } else {
            secrets.reseal(value, binding(&id, slot))
        };
        if let Some(fresh) = fresh {
            *value = fresh;
            changed = true;
        }
    };
    match &mut record.auth {
        StoredAuth::None => {}
        StoredAuth::Basic { password, .. } => renew(password, PASSWORD),
        StoredAuth::Bearer { token } => renew(token, TOKEN),
        StoredAuth::Oauth2ClientCredentials { client_secret, .. } => renew(client_secret, CLIENT_SECRET),
    }
    for secret in &mut record.signing_secrets {
        renew(&mut secret.secret, SIGNING_SECRET);
    }
    for value in record.headers.values_mut() {
        renew(value, HEADER);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SigningSecret;

    fn record(secrets: &SecretBox) -> EndpointRecord {
        let json = serde_json::json!({
            "id": "ep_1", "tenant": "acme", "url": "https://example.com/hook",
            "headers": {"X-Api-Key": "legacy-plain-key"},
            "signingSecrets": [], "createdAt": 1, "updatedAt": 1,
        });
        let mut record: EndpointRecord = serde_json::from_value(json).unwrap();
        record.auth = StoredAuth::Bearer { token: secrets.seal("t0ken", binding("ep_1", TOKEN)) };
        record.signing_secrets =
            vec![SigningSecret { secret: secrets.seal("whsec_x", binding("ep_1", SIGNING_SECRET)), expires_at: None }];
        record
    }

    #[test]
    fn plaintext_headers_of_old_records_are_read_then_sealed_by_the_next_write() {
        let secrets = SecretBox::ephemeral();
        let mut record = record(&secrets);
        assert_eq!(open_headers(&secrets, &record).unwrap()["X-Api-Key"], "legacy-plain-key");
        assert!(reseal(&secrets, &mut record), "the plaintext header is sealed");
        let stored = &record.headers["X-Api-Key"];
        assert!(looks_sealed(&stored.0) && !stored.0.contains("legacy-plain-key"));
        assert_eq!(open_headers(&secrets, &record).unwrap()["X-Api-Key"], "legacy-plain-key");
        assert!(!reseal(&secrets, &mut record), "nothing left to seal");
    }

    #[test]
    fn a_header_sealed_for_another_endpoint_does_not_open() {
        let secrets = SecretBox::ephemeral();
        let mut record = record(&secrets);
        record.headers = seal_headers(&secrets, "ep_2", [("X-Api-Key".to_owned(), "k3y".to_owned())]);
        assert!(open_headers(&secrets, &record).is_err());
        let StoredAuth::Bearer { token } = record.auth.clone() else { unreachable!() };
        record.headers.insert("X-Copied".into(), token);
        record.headers.remove("X-Api-Key");
        assert!(open_headers(&secrets, &record).is_err(), "an auth secret moved into a header stays shut");
    }
}
