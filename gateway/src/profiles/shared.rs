//! What the profiles share: the metadata tag that marks a canonical
//! endpoint or subscription as a profile's, whole-list reads, idempotent
//! "make this endpoint look like that" writes, and renaming the canonical
//! field names in validation problems to the seed's own.

use std::collections::HashMap;

use herald_proto::v1;
use serde_json::Value;

use crate::AppState;
use crate::error::{FieldProblem, GatewayError};

/// The metadata key naming the profile a resource belongs to.
pub const PROFILE: &str = "profile";
/// Page size of the whole-list reads below (the largest the registry serves).
const PAGE: u32 = 1000;

/// `{"profile": profile}` plus `extra`.
pub fn tag(profile: &str, extra: impl IntoIterator<Item = (String, String)>) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = extra.into_iter().collect();
    metadata.insert(PROFILE.to_owned(), profile.to_owned());
    metadata
}

/// Is this metadata of a resource the profile created?
pub fn is_tagged(metadata: &HashMap<String, String>, profile: &str) -> bool {
    metadata.get(PROFILE).is_some_and(|p| p == profile)
}

/// A random (version 4) UUID, lower case: the id shape seed 000 and seed 002 show.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Every endpoint of the tenant, page after page.
pub async fn all_endpoints(state: &AppState, tenant: &str) -> Result<Vec<v1::Endpoint>, GatewayError> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = Some(v1::PageRequest { limit: PAGE, cursor });
        let request = v1::ListEndpointsRequest { tenant: tenant.to_owned(), page };
        let answer = state.upstream.registry().list_endpoints(request).await?.into_inner();
        all.extend(answer.endpoints);
        match answer.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()) {
            Some(next) => cursor = next,
            None => return Ok(all),
        }
    }
}

/// Every subscription of the tenant, or of one of its endpoints when `endpoint_id` is not empty.
pub async fn all_subscriptions(
    state: &AppState,
    tenant: &str,
    endpoint_id: &str,
) -> Result<Vec<v1::Subscription>, GatewayError> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = Some(v1::PageRequest { limit: PAGE, cursor });
        let request =
            v1::ListSubscriptionsRequest { tenant: tenant.to_owned(), page, endpoint_id: endpoint_id.to_owned() };
        let answer = state.upstream.registry().list_subscriptions(request).await?.into_inner();
        all.extend(answer.subscriptions);
        match answer.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()) {
            Some(next) => cursor = next,
            None => return Ok(all),
        }
    }
}

/// The whole event type catalogue.
pub async fn all_event_types(state: &AppState) -> Result<Vec<v1::EventType>, GatewayError> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = Some(v1::PageRequest { limit: PAGE, cursor });
        let answer = state.upstream.registry().list_event_types(v1::ListEventTypesRequest { page }).await?.into_inner();
        all.extend(answer.event_types);
        match answer.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()) {
            Some(next) => cursor = next,
            None => return Ok(all),
        }
    }
}

/// Creates the endpoint under the id the profile derives, or, when it
/// exists, replaces the named `fields` of its spec and activates it again.
/// Profiles whose seed says "set" or "create or update" use this, so a
/// repeated or retried call converges on one endpoint.
pub async fn upsert_endpoint(
    state: &AppState,
    tenant: &str,
    id: &str,
    spec: v1::EndpointSpec,
    fields: &[&str],
) -> Result<(v1::Endpoint, bool), GatewayError> {
    let create = v1::CreateEndpointRequest { tenant: tenant.to_owned(), spec: Some(spec.clone()), id: id.to_owned() };
    match state.upstream.registry().create_endpoint(create).await {
        Ok(answer) => {
            let endpoint = answer.into_inner().endpoint.ok_or_else(missing_endpoint)?;
            return Ok((endpoint, true));
        }
        Err(status) if status.code() == tonic::Code::AlreadyExists => {}
        Err(status) => return Err(status.into()),
    }
    let update = v1::UpdateEndpointRequest {
        tenant: tenant.to_owned(),
        id: id.to_owned(),
        spec: Some(spec),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    };
    let mut endpoint = state.upstream.registry().update_endpoint(update).await?.into_inner();
    if endpoint.status != v1::EndpointStatus::Active as i32 {
        let reference = v1::EndpointRef { tenant: tenant.to_owned(), id: id.to_owned() };
        endpoint = state.upstream.registry().activate_endpoint(reference).await?.into_inner();
    }
    Ok((endpoint, false))
}

/// Creates an endpoint under a fresh id; the answer of `CreateEndpoint`.
pub async fn create_endpoint(
    state: &AppState,
    tenant: &str,
    id: String,
    spec: v1::EndpointSpec,
) -> Result<v1::Endpoint, tonic::Status> {
    let request = v1::CreateEndpointRequest { tenant: tenant.to_owned(), spec: Some(spec), id };
    let answer = state.upstream.registry().create_endpoint(request).await?.into_inner();
    answer.endpoint.ok_or_else(|| tonic::Status::internal("registry answered without the endpoint"))
}

fn missing_endpoint() -> GatewayError {
    GatewayError::Internal("registry answered without the endpoint".into())
}

/// Deletes an endpoint (with its subscriptions); one that is already gone is fine.
pub async fn delete_endpoint(state: &AppState, tenant: &str, id: &str) -> Result<(), GatewayError> {
    let reference = v1::EndpointRef { tenant: tenant.to_owned(), id: id.to_owned() };
    match state.upstream.registry().delete_endpoint(reference).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(status) => Err(status.into()),
    }
}

/// Undoes a half-made profile resource after a later step failed; the
/// caller reports the original failure, so this one is only logged.
pub async fn roll_back_endpoint(state: &AppState, tenant: &str, id: &str) {
    if let Err(e) = delete_endpoint(state, tenant, id).await {
        tracing::warn!(tenant = %tenant, endpoint = %id, error = %e, "could not remove a half-made profile endpoint");
    }
}

/// Makes `endpoint_id` subscribed by exactly one subscription to
/// `event_types` with `filter` (none when `event_types` is empty): an
/// identical one is kept, otherwise a new one is made first and the old
/// ones removed after, so deliveries never pause while it changes.
pub async fn ensure_subscription(
    state: &AppState,
    tenant: &str,
    endpoint_id: &str,
    event_types: Vec<String>,
    filter: Option<Value>,
    metadata: HashMap<String, String>,
) -> Result<Option<v1::Subscription>, GatewayError> {
    let existing = all_subscriptions(state, tenant, endpoint_id).await?;
    let wanted_types = sorted(&event_types);
    let same = |s: &v1::Subscription| {
        sorted(&s.event_types) == wanted_types
            && crate::routes::json_value(&s.filter) == filter
            && s.metadata == metadata
    };
    let kept = if event_types.is_empty() {
        None
    } else if let Some(same) = existing.iter().find(|s| same(s)) {
        Some(same.clone())
    } else {
        let request = v1::CreateSubscriptionRequest {
            tenant: tenant.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
            event_types,
            filter: crate::routes::json_bytes(filter.as_ref()),
            metadata,
        };
        Some(state.upstream.registry().create_subscription(request).await?.into_inner())
    };
    for old in existing.iter().filter(|s| kept.as_ref().map(|k| &k.id) != Some(&s.id)) {
        let reference = v1::SubscriptionRef { tenant: tenant.to_owned(), id: old.id.clone() };
        match state.upstream.registry().delete_subscription(reference).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(status.into()),
        }
    }
    Ok(kept)
}

fn sorted(types: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = types.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

/// Renames the canonical field names of a validation problem to the seed's
/// (`url` → `targetURL`, `data.x` → `rawBody.x`); other errors pass through.
/// A rename applies to the field itself and to its members.
pub fn rename_fields(err: GatewayError, renames: &[(&str, &str)]) -> GatewayError {
    let GatewayError::BadRequest { detail, errors } = err else { return err };
    if errors.is_empty() {
        return GatewayError::BadRequest { detail, errors };
    }
    let errors = errors
        .into_iter()
        .map(|FieldProblem { field, message }| {
            let renamed = renames.iter().find_map(|(from, to)| {
                let rest = field.strip_prefix(from)?;
                (rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')).then(|| format!("{to}{rest}"))
            });
            FieldProblem { field: renamed.unwrap_or(field), message }
        })
        .collect();
    GatewayError::invalid_fields(errors)
}

/// A seed field that must be a non-empty text of at most `max` characters.
pub fn required_text(errors: &mut Vec<FieldProblem>, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        errors.push(FieldProblem::new(field, "is required"));
    } else {
        optional_text(errors, field, value, max);
    }
}

/// A seed field of at most `max` characters.
pub fn optional_text(errors: &mut Vec<FieldProblem>, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        errors.push(FieldProblem::new(field, format!("must be at most {max} characters")));
    }
}

/// `Ok` when nothing was found wrong, else one `400` naming every field.
pub fn finish(errors: Vec<FieldProblem>) -> Result<(), GatewayError> {
    if errors.is_empty() { Ok(()) } else { Err(GatewayError::invalid_fields(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let id = new_uuid();
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(new_uuid(), id);
    }

    #[test]
    fn field_names_are_renamed_with_their_members() {
        let err = GatewayError::invalid_fields(vec![
            FieldProblem::new("url", "scheme must be https"),
            FieldProblem::new("auth.tokenUrl", "host resolves to a non-public address"),
            FieldProblem::new("data.processUniqueId", "bad"),
            FieldProblem::new("database", "untouched"),
        ]);
        let renamed =
            rename_fields(err, &[("url", "targetURL"), ("auth.tokenUrl", "auth.tokenURL"), ("data", "rawBody")]);
        let problem = renamed.problem();
        let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["targetURL", "auth.tokenURL", "rawBody.processUniqueId", "database"]);
        assert!(problem.detail.starts_with("targetURL: "), "{}", problem.detail);
        let other = rename_fields(GatewayError::not_found("x"), &[("url", "targetURL")]);
        assert_eq!(other.status(), axum::http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn tags_mark_profile_resources() {
        let metadata = tag("seed002", [("a".to_owned(), "b".to_owned())]);
        assert!(is_tagged(&metadata, "seed002"));
        assert!(!is_tagged(&metadata, "seed003"));
        assert!(!is_tagged(&HashMap::new(), "seed002"));
    }
}
