//! Rules for an endpoint's own retry policy (`retry`): a schedule of waits
//! and a cap on attempts, each bounded so one endpoint cannot keep
//! deliveries (and their stream entries) alive for months or retry in a
//! tight loop.

use std::time::Duration;

use herald_common::config::{parse_duration, retry_horizon};
use herald_common::env::format_duration;
use herald_common::model::RetryPolicy;
use herald_common::retry_schedule::Schedule;
use herald_proto::v1;

use crate::validate::Violations;

/// Most waits a schedule may list.
pub const MAX_SCHEDULE: usize = 32;
/// Shortest wait: shorter ones would hammer a failing receiver.
pub const MIN_WAIT: Duration = Duration::from_millis(100);
/// Longest wait: a delivery's event must outlive its retries.
pub const MAX_WAIT: Duration = Duration::from_secs(7 * 86_400);
/// Most attempts, the first included.
pub const MAX_ATTEMPTS: u32 = 100;

/// The stored policy of `wire`, or `None` when it asks for nothing (the
/// installation's schedule then applies). Errors name `retry.schedule[i]`
/// or `retry.maxAttempts`.
pub fn check(v: &mut Violations, wire: Option<v1::RetryPolicy>) -> Option<RetryPolicy> {
    let v1::RetryPolicy { schedule, max_attempts } = wire?;
    if schedule.len() > MAX_SCHEDULE {
        v.add("retry.schedule", format!("at most {MAX_SCHEDULE} waits"));
    } else {
        for (i, raw) in schedule.iter().enumerate() {
            match parse_duration(raw) {
                Some(wait) if (MIN_WAIT..=MAX_WAIT).contains(&wait) => {}
                Some(_) => v.add(format!("retry.schedule[{i}]"), "must be between 100ms and 7d"),
                None => v.add(format!("retry.schedule[{i}]"), "is not a duration like 500ms, 5s, 2m, 1h or 1d"),
            }
        }
    }
    v.check(
        max_attempts.is_none_or(|n| (1..=MAX_ATTEMPTS).contains(&n)),
        "retry.maxAttempts",
        format!("must be between 1 and {MAX_ATTEMPTS}"),
    );
    let schedule: Vec<String> = schedule.into_iter().map(|s| s.trim().to_owned()).collect();
    (!schedule.is_empty() || max_attempts.is_some()).then_some(RetryPolicy { schedule, max_attempts })
}

/// Refuses a policy whose retries would outlast `retention`: the event's
/// payload would expire while its deliveries still wait to be retried. The
/// horizon is counted as the start-up check counts the installation's
/// schedule (longest jitter, each wait at least `retry_after_max`), with
/// waits past the schedule repeating its last one, as the dispatcher does.
pub fn check_horizon(
    v: &mut Violations,
    policy: &RetryPolicy,
    installation: &[Duration],
    retention: Duration,
    retry_after_max: Duration,
) {
    let waits: Vec<Duration> = Schedule::new(installation, Some(policy)).waits().collect();
    let horizon = retry_horizon(&waits, retry_after_max);
    v.check(
        horizon < retention,
        "retry",
        format!(
            "retries would go on for up to {}, past HERALD_EVENT_RETENTION ({}): shorten the schedule or lower maxAttempts",
            format_duration(horizon),
            format_duration(retention)
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(schedule: &[&str], max_attempts: Option<u32>) -> (Option<RetryPolicy>, Vec<String>) {
        let mut v = Violations::new();
        let wire = v1::RetryPolicy { schedule: schedule.iter().map(|s| (*s).to_owned()).collect(), max_attempts };
        let policy = check(&mut v, Some(wire));
        let errors = match v.finish() {
            Err(crate::RegistryError::Invalid(list)) => list.into_iter().map(|e| e.field).collect(),
            _ => Vec::new(),
        };
        (policy, errors)
    }

    #[test]
    fn policies_are_bounded_and_errors_name_the_entry() {
        let (policy, errors) = fields(&["5s", " 1m", "2h"], Some(3));
        assert!(errors.is_empty());
        assert_eq!(policy.unwrap().schedule, ["5s", "1m", "2h"]);
        assert_eq!(fields(&["5s", "1m", "soon"], None).1, ["retry.schedule[2]"]);
        assert_eq!(fields(&["10ms"], None).1, ["retry.schedule[0]"]);
        assert_eq!(fields(&["8d"], None).1, ["retry.schedule[0]"]);
        assert_eq!(fields(&["1s"; 33], None).1, ["retry.schedule"]);
        assert_eq!(fields(&[], Some(0)).1, ["retry.maxAttempts"]);
        assert_eq!(fields(&[], Some(101)).1, ["retry.maxAttempts"]);
        assert_eq!(fields(&[], Some(1)).0.unwrap().max_attempts, Some(1));
        assert_eq!(fields(&[], None), (None, Vec::new()));
        let mut v = Violations::new();
        assert_eq!(check(&mut v, None), None);
    }

    #[test]
    fn retries_must_end_before_the_event_expires() {
        let hour = Duration::from_secs(3600);
        let installation = [Duration::from_secs(5), hour, 24 * hour];
        let refused = |schedule: &[&str], max_attempts: Option<u32>| {
            let policy = RetryPolicy { schedule: schedule.iter().map(|s| (*s).to_owned()).collect(), max_attempts };
            let mut v = Violations::new();
            check_horizon(&mut v, &policy, &installation, 72 * hour, hour);
            v.finish().is_err()
        };
        assert!(!refused(&["5s", "1m"], None), "two short waits");
        assert!(!refused(&[], Some(1)), "never retried");
        assert!(!refused(&[], None), "the installation's own schedule, about 30 h");
        // Past the schedule the last wait repeats: 20 attempts of the
        // installation's schedule run for about 18 days.
        assert!(refused(&[], Some(20)));
        assert!(refused(&["7d"], None));
        assert!(refused(&["1d", "1d", "1d"], None), "3 × 1.2 days at the longest jitter");
    }
}
