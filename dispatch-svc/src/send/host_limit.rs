//! Requests in flight to one host, per actor thread.
//!
//! Each endpoint bounds its own attempts (`maxInFlight`), but many endpoints
//! often share a host: a receiver platform's hooks, or every tenant of one
//! integrator. Without a bound per host they add up: 10,000 endpoints on one
//! host, each with a first event, open thousands of connections at once, and
//! a busy host gets as many as the endpoints' limits allow, each request
//! costing both sides more the more there are (see BENCHMARKS.md).
//! `HERALD_HOST_MAX_IN_FLIGHT` is the bound per dispatcher; each actor
//! thread keeps its share, because its HTTP client pools its own
//! connections and a slot handed between threads would wake the other one.
//! Waiting attempts get slots in the order they asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Semaphore;
use url::Url;

/// The slots of one host: a request holds one from before it is sent until
/// its answer is read.
pub type HostSlots = Arc<Semaphore>;

/// One actor thread's slots, by host.
#[derive(Debug)]
pub struct HostLimits {
    /// 0: no bound.
    per_host: usize,
    hosts: Mutex<Hosts>,
}

#[derive(Debug, Default)]
struct Hosts {
    /// Held by the prepared endpoints that send there; an entry whose
    /// endpoints all went away is dropped at the next sweep.
    slots: HashMap<String, Weak<Semaphore>>,
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

impl HostLimits {
    /// The share of one of `threads` actor threads of a dispatcher-wide
    /// bound of `per_dispatcher` (0: no bound).
    pub fn share(per_dispatcher: usize, threads: usize) -> HostLimits {
        let per_host = if per_dispatcher == 0 { 0 } else { per_dispatcher.div_ceil(threads.max(1)) };
        HostLimits { per_host, hosts: Mutex::new(Hosts { slots: HashMap::new(), sweep_at: FIRST_SWEEP }) }
    }

    /// The slots every endpoint sending to `url`'s host shares, `None`
    /// without a bound.
    pub fn slots_for(&self, url: &Url) -> Option<HostSlots> {
        if self.per_host == 0 {
            return None;
        }
        let key = host_key(url);
        // A poisoned lock only means another thread panicked mid-insert;
        // the map is still whole.
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slots) = hosts.slots.get(&key).and_then(Weak::upgrade) {
            return Some(slots);
        }
        let slots = Arc::new(Semaphore::new(self.per_host));
        hosts.slots.insert(key, Arc::downgrade(&slots));
        if hosts.slots.len() >= hosts.sweep_at {
            hosts.slots.retain(|_, slots| slots.strong_count() > 0);
            hosts.sweep_at = (hosts.slots.len() * 2).max(FIRST_SWEEP);
        }
        Some(slots)
    }

    #[cfg(test)]
    fn hosts_kept(&self) -> usize {
        self.hosts.lock().map(|h| h.slots.len()).unwrap_or(0)
    }
}

/// What a connection pool tells hosts apart by: scheme, host and port.
fn host_key(url: &Url) -> String {
    format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> Url {
        Url::parse(raw).unwrap()
    }

    #[test]
    fn endpoints_of_one_host_share_its_slots() {
        let limits = HostLimits::share(8, 2);
        let a = limits.slots_for(&url("https://hooks.example.com/a")).unwrap();
        let b = limits.slots_for(&url("https://hooks.example.com:443/b?x=1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.available_permits(), 4, "each of 2 threads holds half of 8");
        let other_port = limits.slots_for(&url("https://hooks.example.com:8443/a")).unwrap();
        let other_scheme = limits.slots_for(&url("http://hooks.example.com/a")).unwrap();
        let other_host = limits.slots_for(&url("https://api.example.com/a")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other_port) && !Arc::ptr_eq(&a, &other_scheme) && !Arc::ptr_eq(&a, &other_host));
    }

    #[test]
    fn no_bound_gives_no_slots() {
        assert!(HostLimits::share(0, 2).slots_for(&url("https://hooks.example.com/")).is_none());
    }

    #[test]
    fn a_share_is_never_zero() {
        let limits = HostLimits::share(1, 4);
        assert_eq!(limits.slots_for(&url("https://hooks.example.com/")).unwrap().available_permits(), 1);
    }

    #[test]
    fn hosts_nobody_sends_to_are_forgotten() {
        let limits = HostLimits::share(4, 1);
        let kept = limits.slots_for(&url("https://kept.example.com/")).unwrap();
        for n in 0..3 * FIRST_SWEEP {
            drop(limits.slots_for(&url(&format!("https://h{n}.example.com/"))));
        }
        assert!(limits.hosts_kept() <= FIRST_SWEEP, "{} hosts kept", limits.hosts_kept());
        let again = limits.slots_for(&url("https://kept.example.com/")).unwrap();
        assert!(Arc::ptr_eq(&kept, &again), "a host still sent to keeps its slots");
    }

    #[tokio::test]
    async fn a_request_past_the_bound_waits_for_a_slot() {
        let limits = HostLimits::share(2, 1);
        let slots = limits.slots_for(&url("https://hooks.example.com/")).unwrap();
        let first = slots.acquire().await.unwrap();
        let _second = slots.acquire().await.unwrap();
        assert!(slots.try_acquire().is_err());
        drop(first);
        assert!(slots.try_acquire().is_ok());
    }
}
