//! Which incarnation of an endpoint a job or a health record belongs to.
//!
//! Endpoint ids outlive their endpoints: a deleted endpoint's jobs may still
//! wait in a retry set or a stream, its `ep:{id}:hp` keeps its retention
//! TTL, and the same id can be created again (the compatibility profiles
//! name endpoints after their tenant, `s004.{tenant}`). Each creation gets a
//! fresh [`EndpointRecord::generation`], which the registry writes into
//! every job, so a job of an earlier incarnation is failed unsent instead of
//! reaching the new endpoint. Activation starts the health over as well:
//! the health record is written for an *epoch* (generation and the last
//! activation), and one written for another epoch reads as clean.

use herald_common::model::{EndpointRecord, Job};

/// The epoch an endpoint's health record is written for.
pub fn health_epoch(record: &EndpointRecord) -> String {
    format!("{}@{}", record.generation, record.activated_at.unwrap_or(0))
}

/// Why `job` must not be sent to `record`, if it must not: it names
/// another tenant (an id freed by one tenant and taken by another), or an
/// earlier incarnation of the endpoint. Jobs written before generations
/// existed carry none and are judged by tenant alone.
pub fn refusal(job: &Job, record: &EndpointRecord) -> Option<String> {
    if job.tenant != record.tenant {
        return Some("endpoint deleted; its id now belongs to another endpoint".to_owned());
    }
    match &job.generation {
        Some(generation) if *generation != record.generation => {
            Some("endpoint deleted and created again; this delivery belonged to the deleted one".to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(tenant: &str, generation: &str) -> EndpointRecord {
        let json = serde_json::json!({
            "id": "s004.acme", "tenant": tenant, "url": "https://example.com/hook",
            "signingSecrets": [], "createdAt": 1, "updatedAt": 1, "generation": generation,
        });
        serde_json::from_value(json).unwrap()
    }

    fn job(tenant: &str, generation: Option<&str>) -> Job {
        Job {
            delivery_id: "dlv_1".into(),
            tenant: tenant.into(),
            endpoint_id: "s004.acme".into(),
            event_id: "evt_1".into(),
            attempt: 2,
            traceparent: None,
            generation: generation.map(str::to_owned),
        }
    }

    #[test]
    fn only_jobs_of_the_same_tenant_and_incarnation_are_sent() {
        let current = endpoint("acme", "gen_b");
        assert_eq!(refusal(&job("acme", Some("gen_b")), &current), None);
        assert_eq!(refusal(&job("acme", None), &current), None, "a job from before generations");
        let old = refusal(&job("acme", Some("gen_a")), &current).unwrap();
        assert!(old.contains("created again"), "{old}");
        let foreign = refusal(&job("other", Some("gen_b")), &current).unwrap();
        assert!(foreign.contains("another endpoint"), "{foreign}");
        assert!(refusal(&job("other", None), &current).is_some());
    }

    #[test]
    fn the_epoch_moves_with_creation_and_activation() {
        let mut record = endpoint("acme", "gen_a");
        let first = health_epoch(&record);
        record.activated_at = Some(5);
        let activated = health_epoch(&record);
        assert_ne!(first, activated);
        record.generation = "gen_b".into();
        assert_ne!(health_epoch(&record), activated);
    }
}
