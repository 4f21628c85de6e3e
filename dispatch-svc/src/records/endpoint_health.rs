//! `ep:{id}:health`, the stored side of an endpoint's circuit breaker.
//!
//! The hash outlives the endpoint (its id may be taken again) and a
//! deactivation, so it names the incarnation it was written for: `epoch`
//! ([`crate::lifecycle::health_epoch`]) changes when an endpoint is created
//! again under the same id or activated again. A record of another epoch
//! is read as no record at all, so neither a new endpoint nor a re-activated
//! one inherits an open circuit or an old disable clock.

use std::collections::HashMap;

use herald_common::model::Millis;

/// Live health of an endpoint, stored in `ep:{id}:health`: what
/// `GetEndpointHealth` shows, and what a new actor's breaker starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthRecord {
    pub circuit: String,
    pub in_flight: u32,
    pub consecutive_failures: u32,
    pub last_success_at: Option<Millis>,
    pub failing_since: Option<Millis>,
    pub token_error: Option<String>,
    /// When an open circuit lets the next probe through (wall clock, ms).
    pub open_until: Option<Millis>,
    /// The current cool-down, which doubles on each re-open.
    pub cool_down_ms: u64,
    /// The endpoint incarnation this was written for; `None` in records
    /// written before epochs existed, which are taken as current.
    pub epoch: Option<String>,
}

/// An endpoint with no attempts yet: closed, nothing failing.
impl Default for HealthRecord {
    fn default() -> Self {
        HealthRecord::from_hash(&HashMap::new())
    }
}

impl HealthRecord {
    pub(crate) fn fields(&self) -> [(&'static str, String); 9] {
        let opt = |v: Option<Millis>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            ("circuit", self.circuit.clone()),
            ("inFlight", self.in_flight.to_string()),
            ("consecutiveFailures", self.consecutive_failures.to_string()),
            ("lastSuccessAt", opt(self.last_success_at)),
            ("failingSince", opt(self.failing_since)),
            ("tokenError", self.token_error.clone().unwrap_or_default()),
            ("openUntil", opt(self.open_until)),
            ("coolDownMs", self.cool_down_ms.to_string()),
            ("epoch", self.epoch.clone().unwrap_or_default()),
        ]
    }

    pub fn from_hash(hash: &HashMap<String, String>) -> Self {
        let millis = |k: &str| hash.get(k).and_then(|v| v.parse::<Millis>().ok());
        HealthRecord {
            circuit: hash.get("circuit").cloned().unwrap_or_else(|| "closed".to_owned()),
            in_flight: hash.get("inFlight").and_then(|v| v.parse().ok()).unwrap_or(0),
            consecutive_failures: hash.get("consecutiveFailures").and_then(|v| v.parse().ok()).unwrap_or(0),
            last_success_at: millis("lastSuccessAt"),
            failing_since: millis("failingSince"),
            token_error: hash.get("tokenError").filter(|v| !v.is_empty()).cloned(),
            open_until: millis("openUntil"),
            cool_down_ms: hash.get("coolDownMs").and_then(|v| v.parse().ok()).unwrap_or(0),
            epoch: hash.get("epoch").filter(|v| !v.is_empty()).cloned(),
        }
    }

    /// This record if it was written for `epoch`, else a clean one.
    pub fn for_epoch(self, epoch: &str) -> Self {
        if self.epoch.as_deref().is_none_or(|own| own == epoch) { self } else { HealthRecord::default() }
    }

    /// The circuit as it is at `now_ms`: an open circuit whose cool-down
    /// has passed lets a probe through, whatever was stored with the last
    /// attempt.
    pub fn circuit_at(&self, now_ms: Millis) -> &str {
        match self.open_until {
            Some(until) if self.circuit == "open" && until <= now_ms => "half_open",
            _ => &self.circuit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(epoch: Option<&str>) -> HealthRecord {
        HealthRecord {
            circuit: "open".into(),
            consecutive_failures: 7,
            failing_since: Some(1_000),
            epoch: epoch.map(str::to_owned),
            ..HealthRecord::default()
        }
    }

    #[test]
    fn a_record_of_another_epoch_reads_as_clean() {
        assert_eq!(failing(Some("g1@0")).for_epoch("g1@0"), failing(Some("g1@0")));
        assert_eq!(failing(Some("g1@0")).for_epoch("g2@0"), HealthRecord::default());
        assert_eq!(failing(Some("g1@0")).for_epoch("g1@5"), HealthRecord::default(), "activated again");
        assert_eq!(failing(None).for_epoch("g1@0"), failing(None), "written before epochs existed");
    }

    #[test]
    fn fields_round_trip_through_the_hash() {
        let record = HealthRecord { token_error: Some("invalid_client".into()), ..failing(Some("g1@3")) };
        let hash: HashMap<String, String> = record.fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(HealthRecord::from_hash(&hash), record);
    }
}
