//! Seed 000's message types: the event types its own catalogue file
//! (`deploy/catalog/seed-000-notifications.json`) defines, not the whole
//! catalogue an installation serves. Discovery lists them and a
//! subscription may name only them: the seed's envelope and its
//! organization / location / revenue-center scope are made for these
//! notifications, and another seed's types (a partner callback type, a
//! company event) mean nothing to a seed 000 subscriber.
//!
//! A type is listed once the catalogue holds it (`HERALD_CATALOG_DIR`
//! loads it, as `run.sh` does), with the catalogue's description.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::GatewayError;
use crate::openapi::Problems;
use crate::profiles::shared;

/// The seed's message types, in its catalogue file's order.
pub const MESSAGE_TYPES: &[&str] =
    &["OrganizationsNotification", "ConfigurationNotification", "CheckNotification", "EmployeesNotification"];

/// Is `id` one of the seed's message types?
pub fn is_message_type(id: &str) -> bool {
    MESSAGE_TYPES.contains(&id)
}

/// The message types a subscription may name.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Seed000Discovery {
    pub message_types: Vec<Seed000MessageTypeInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Seed000MessageTypeInfo {
    pub id: String,
    pub description: String,
}

/// The seed's message types that the event type catalogue holds.
#[utoipa::path(get, path = "/api/v1/notifications/discovery", tag = "seed000",
    responses((status = 200, description = "OK", body = Seed000Discovery), Problems))]
pub async fn discovery(State(state): State<AppState>, _: Caller) -> Result<axum::Json<Seed000Discovery>, GatewayError> {
    let catalogue = shared::all_event_types(&state).await?;
    let message_types = MESSAGE_TYPES
        .iter()
        .filter_map(|id| catalogue.iter().find(|t| t.name == *id))
        .map(|t| Seed000MessageTypeInfo { id: t.name.clone(), description: t.description.clone() })
        .collect();
    Ok(axum::Json(Seed000Discovery { message_types }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_seeds_catalogue_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/catalog/seed-000-notifications.json");
        let file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let names: Vec<&str> =
            file["eventTypes"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, MESSAGE_TYPES);
        assert!(is_message_type("CheckNotification"));
        assert!(!is_message_type("WorkflowStateChange") && !is_message_type("checknotification"));
    }
}
