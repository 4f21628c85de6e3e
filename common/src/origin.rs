//! The DNS name Herald announces as `WebHook-Request-Origin` (CloudEvents
//! webhook spec, section 4): on the abuse-protection handshake and on every
//! delivery to a CloudEvents endpoint, so receivers can tell who sends.
//!
//! `HERALD_WEBHOOK_ORIGIN` names it. Without it the host's own name is used
//! when it is a valid DNS name, else `herald.invalid` (a name that can
//! never resolve, RFC 2606, so it cannot impersonate anyone). Replicas have
//! different host names, and receivers allow-list one origin: production
//! sets the variable.

use crate::env::Env;
use crate::{CommonError, Result};

pub const FALLBACK_ORIGIN: &str = "herald.invalid";

/// An RFC 1123 host name: dot-separated labels of letters, digits and
/// inner hyphens, each 1–63 long, 253 in all.
pub fn is_dns_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

/// The origin of this process, from `HERALD_WEBHOOK_ORIGIN` or the host.
pub fn from_env(env: &Env) -> Result<String> {
    match env.get("HERALD_WEBHOOK_ORIGIN").map(|o| o.trim().to_ascii_lowercase()) {
        Some(origin) if is_dns_name(&origin) => Ok(origin),
        Some(origin) => Err(CommonError::Config(format!("HERALD_WEBHOOK_ORIGIN={origin:?} is not a DNS name"))),
        None => Ok(host_name().filter(|h| is_dns_name(h)).unwrap_or_else(|| FALLBACK_ORIGIN.to_owned())),
    }
}

fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_dns_names() {
        for good in ["herald.example.com", "localhost", "a-1.b2", "x"] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in ["", "-a.com", "a-.com", "a..b", "a b", "under_score.com", "a.com.", &"a".repeat(64)] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        let env = |v: &str| Env::from_pairs([("HERALD_WEBHOOK_ORIGIN", v)]);
        assert_eq!(from_env(&env("Hooks.Example.com")).unwrap(), "hooks.example.com");
        assert!(from_env(&env("not a name")).is_err());
        assert!(is_dns_name(&from_env(&Env::default()).unwrap()));
    }
}
