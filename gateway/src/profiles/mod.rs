//! Compatibility profiles: the seed vendors' path families (PRODUCT §6),
//! served verbatim over the same upstream calls as the canonical API.
//!
//! Each profile is a module here contributing an [`ApiRouter`] that
//! [`routes`] merges, so profile routes share authentication, problem+json
//! errors, request metrics and the OpenAPI document with `/v1`.
//!
//! A profile holds no state of its own. What a seed calls a webhook, a
//! callback or a subscription is a canonical endpoint plus subscription,
//! created through the same registry calls `/v1` makes and tagged with
//! `metadata.profile` (`seed000`, `seed002`, `seed003`, `seed004`); the
//! seed's own fields that the canonical model has no place for live in that
//! metadata too (seed 000's subscriber lives in the tenant's metadata).
//! Deliveries therefore go through the one delivery path, with its signing,
//! retries, SSRF guard and history, and every profile resource is visible
//! and manageable under `/v1` as well.

pub mod seed000;
pub mod seed002;
pub mod seed003;
pub mod seed004;
pub mod shared;

use std::sync::Arc;

use herald_common::config::HeraldConfig;
use herald_common::url_policy::UrlPolicy;

use crate::AppState;
use crate::openapi::ApiRouter;

/// Every profile's routes.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().merge(seed000::routes()).merge(seed002::routes()).merge(seed003::routes()).merge(seed004::routes())
}

/// What the profiles take from the configuration, worked out once.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Seed 000's own callback rule (https, port 443, one of its top-level
    /// domains), applied on top of the global URL policy. `None` when
    /// `HERALD_ALLOW_PRIVATE_NETWORKS` is on: a deployment that lets
    /// endpoints reach private networks (development, tests) has chosen
    /// loopback and plain HTTP receivers, which the seed's rule would refuse.
    pub seed000_callbacks: Option<Arc<UrlPolicy>>,
}

impl Settings {
    pub fn new(config: &HeraldConfig) -> Settings {
        let global = &config.url_policy;
        let seed000_callbacks = (!global.allow_private_networks).then(|| {
            Arc::new(UrlPolicy {
                allow_private_networks: false,
                allow_http: false,
                allowed_ports: vec![443],
                allowed_tlds: seed000::CALLBACK_TLDS.iter().map(|t| (*t).to_owned()).collect(),
                allowed_cidrs: global.allowed_cidrs.clone(),
            })
        });
        Settings { seed000_callbacks }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use herald_common::config::Env;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
        routes
    }

    #[test]
    fn every_profile_route_is_documented() {
        let routes = documented();
        for (method, path) in [
            ("POST", "/api/v1/notifications/registration"),
            ("PUT", "/api/v1/notifications/registration"),
            ("DELETE", "/api/v1/notifications/registration"),
            ("GET", "/api/v1/notifications/subscriptions"),
            ("POST", "/api/v1/notifications/subscriptions"),
            ("DELETE", "/api/v1/notifications/subscriptions"),
            ("GET", "/api/v1/notifications/subscriptions/{subscriptionId}"),
            ("DELETE", "/api/v1/notifications/subscriptions/{subscriptionId}"),
            ("GET", "/api/v1/notifications/discovery"),
            ("POST", "/api/notifications/v1/webhooks"),
            ("GET", "/api/notifications/v1/webhooks"),
            ("GET", "/api/notifications/v1/webhooks/{id}"),
            ("DELETE", "/api/notifications/v1/webhooks/{id}"),
            ("PATCH", "/api/notifications/v1/webhooks/{id}/deactivation"),
            ("GET", "/partners/{partnerUniqueID}/callbacks"),
            ("PUT", "/partners/{partnerUniqueID}/callbacks/{notificationType}"),
            ("DELETE", "/partners/{partnerUniqueID}/callbacks/{notificationType}"),
            ("POST", "/partners/{partnerUniqueID}/callbacks/{notificationTypeID}/echo"),
            ("POST", "/company/webhook"),
        ] {
            assert!(routes.contains(&(method.to_owned(), path.to_owned())), "{method} {path} is not documented");
        }
    }

    #[test]
    fn documented_bodies_use_the_seed_field_names() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for (schema, fields) in [
            ("Seed000SubscriptionInput", &["callbackUri", "messageType", "orgShortName", "locRef", "rvcRef"][..]),
            ("Seed000Subscription", &["subscriptionId", "subscriberId", "callbackUri"][..]),
            ("Seed002WebhookInput", &["targetURL", "auth"][..]),
            ("Seed002ClientCredential", &["clientID", "clientSecret", "tokenURL"][..]),
            ("Seed002Webhook", &["id", "createdAt", "updatedAt", "targetURL", "auth", "status"][..]),
            ("Seed003CallbackInput", &["callbackUrl", "auth"][..]),
            ("Seed003Callback", &["partnerUniqueID", "notificationType", "callbackUrl"][..]),
            ("Seed003EchoInput", &["rawBody"][..]),
            ("Seed004WebhookInput", &["companyAccessCode", "webhookURL"][..]),
        ] {
            let properties = schemas[schema]["properties"].as_object();
            let properties = properties.unwrap_or_else(|| panic!("{schema} is not documented: {}", schemas[schema]));
            for field in fields {
                assert!(properties.contains_key(*field), "{schema} has no {field}: {properties:?}");
            }
        }
    }

    #[test]
    fn the_seed_000_rule_follows_the_private_network_switch() {
        let strict = Env::from_pairs([("HERALD_ALLOW_PRIVATE_NETWORKS", "false")]);
        let settings = Settings::new(&HeraldConfig::from_env(&strict, true).unwrap());
        let policy = settings.seed000_callbacks.unwrap();
        assert_eq!(policy.allowed_ports, vec![443]);
        assert!(policy.allowed_tlds.iter().any(|t| t == "site"));
        let open = Env::from_pairs([("HERALD_ALLOW_PRIVATE_NETWORKS", "true")]);
        assert!(Settings::new(&HeraldConfig::from_env(&open, true).unwrap()).seed000_callbacks.is_none());
    }
}
