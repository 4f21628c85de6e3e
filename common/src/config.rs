//! Configuration from the environment, validated once at start-up.
//!
//! The environment is read through [`Env`], a plain map, so tests build a
//! configuration from pairs and never touch the process environment.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::crypto::SecretBox;
use crate::url_policy::UrlPolicy;
use crate::{CommonError, Result};

pub use crate::env::{Env, format_duration, parse_duration};

/// Refuses the placeholders of `deploy/k8s/base/secret`, so a Secret applied
/// unedited stops the process instead of guarding it with a published token.
fn not_a_placeholder<'a>(key: &str, value: Option<&'a str>) -> Result<Option<&'a str>> {
    match value {
        Some(v) if v.trim().starts_with("REPLACE-ME") => {
            Err(CommonError::Config(format!("{key} is still the placeholder from deploy/k8s; set a real value")))
        }
        other => Ok(other),
    }
}

/// Everything the three services read from the environment. Each service
/// uses the part it needs; validation happens here, once.
#[derive(Clone, Debug)]
pub struct HeraldConfig {
    /// `HERALD_REDIS_URL` or `HERALD_REDIS_CLUSTER_URLS`, with
    /// `HERALD_REDIS_CA_FILE` for TLS with a private CA.
    pub redis: crate::redis_conn::RedisTarget,
    pub redis_prefix: String,
    pub registry_listen: SocketAddr,
    pub registry_admin_listen: SocketAddr,
    pub dispatch_listen: SocketAddr,
    pub dispatch_admin_listen: SocketAddr,
    pub gateway_listen: SocketAddr,
    pub registry_url: String,
    pub dispatch_url: String,
    pub admin_token: Option<String>,
    pub grpc_token: Option<String>,
    /// `HERALD_GRPC_PUBLISH_TOKENS`: tokens that may only publish.
    pub grpc_publish_tokens: Vec<String>,
    pub secrets: SecretBox,
    pub url_policy: UrlPolicy,
    pub partitions: u32,
    pub delivery_timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    /// Longest wait a `Retry-After` answer may impose (`HERALD_RETRY_AFTER_MAX`, default 1h).
    pub retry_after_max: Duration,
    pub max_event_bytes: usize,
    /// Largest `envelope` batch body; a single bigger event still goes alone.
    pub max_batch_bytes: usize,
    pub event_retention: Duration,
    /// How long a delivered delivery's record is kept
    /// (`HERALD_SUCCESS_RETENTION`, at most and by default the event
    /// retention); failed and retrying ones keep the event retention.
    pub success_retention: Duration,
    pub idempotency_window: Duration,
    /// Default per-endpoint concurrency when `maxInFlight` is not set.
    pub default_max_in_flight: u32,
    /// Requests in flight to one host from one dispatcher (0: no bound).
    pub host_max_in_flight: usize,
    /// Auto-disable an endpoint after this long of nothing but failures.
    pub disable_after: Duration,
    /// Circuit breaker: consecutive failed attempts before it opens
    /// (`HERALD_CIRCUIT_FAILURES`, default 20)...
    pub circuit_failures: u32,
    /// ...that span at least this long (`HERALD_CIRCUIT_FAILING_FOR`, default 10s).
    pub circuit_failing_for: Duration,
    /// First cool-down of an open circuit, doubled on each re-open
    /// (`HERALD_CIRCUIT_COOL_DOWN`, default 5s)...
    pub circuit_cool_down: Duration,
    /// ...up to this (`HERALD_CIRCUIT_MAX_COOL_DOWN`, default 5m).
    pub circuit_max_cool_down: Duration,
    /// Most endpoints one tenant may have (`HERALD_MAX_ENDPOINTS_PER_TENANT`, default 10000).
    pub max_endpoints_per_tenant: u64,
    /// Most subscriptions one tenant may have (`HERALD_MAX_SUBSCRIPTIONS_PER_TENANT`, default 50000).
    pub max_subscriptions_per_tenant: u64,
    /// Per API key gateway requests per second (0 = unlimited).
    pub api_rate_limit: u32,
    /// The gateway closes a connection that has not sent a whole request
    /// head within this long (`HERALD_HEADER_READ_TIMEOUT`, default 10s).
    pub header_read_timeout: Duration,
    /// Most connections the gateway keeps open from one peer address
    /// (`HERALD_MAX_CONNECTIONS_PER_PEER`, default 256).
    pub max_connections_per_peer: usize,
    /// Directory of event type catalogue files the registry loads at start-up.
    pub catalog_dir: Option<std::path::PathBuf>,
    /// `WebHook-Request-Origin` of CloudEvents deliveries ([`crate::origin`]).
    pub webhook_origin: String,
    /// Where integrators reach the gateway (`HERALD_PUBLIC_URL`), for portal
    /// links; `None` = the address the caller used.
    pub public_url: Option<String>,
    pub dev: bool,
}

/// Jitter the dispatcher applies to every scheduled retry delay: ±20 %.
pub const RETRY_JITTER: f64 = 0.2;

/// How long after its first attempt a delivery may still be retried: every
/// delay of the schedule at its longest jitter, each at least the longest
/// wait a receiver's `Retry-After` may impose. (A `fifo` hold or an open
/// circuit can add to it; a manual retry starts a new attempt at any time.)
pub fn retry_horizon(schedule: &[Duration], retry_after_max: Duration) -> Duration {
    schedule
        .iter()
        .fold(Duration::ZERO, |sum, delay| sum.saturating_add(delay.mul_f64(1.0 + RETRY_JITTER).max(retry_after_max)))
}

/// Payloads and delivery records live for the event retention; a delivery
/// still retrying past it would find its payload gone, and a republished
/// event id could then store new data under the id it is retried with.
fn check_retention(retention: Duration, schedule: &[Duration], retry_after_max: Duration) -> Result<()> {
    let horizon = retry_horizon(schedule, retry_after_max);
    if retention > horizon {
        return Ok(());
    }
    Err(CommonError::Config(format!(
        "HERALD_EVENT_RETENTION ({}) must be longer than the retry horizon ({}): the sum of the \
         HERALD_RETRY_SCHEDULE delays with +{:.0} % jitter, each at least HERALD_RETRY_AFTER_MAX ({}); \
         raise the retention or shorten the schedule",
        format_duration(retention),
        format_duration(horizon),
        RETRY_JITTER * 100.0,
        format_duration(retry_after_max),
    )))
}

impl HeraldConfig {
    pub const DEFAULT_RETRY_SCHEDULE: &'static str = "5s,30s,2m,10m,30m,1h,3h,6h,12h,24h";

    /// The key names of this installation. On a Redis Cluster the prefix is
    /// the hash tag of every key (`{herald}:…`): all of Herald's keys share
    /// one slot, so its atomic multi-key steps never cross slots.
    pub fn keys(&self) -> crate::keys::Keys {
        if self.redis.is_cluster() {
            crate::keys::Keys::sharded(self.redis_prefix.clone(), self.partitions)
        } else {
            crate::keys::Keys::new(self.redis_prefix.clone())
        }
    }

    /// Reads and validates. `dev` relaxes what a developer on a laptop needs:
    /// an ephemeral secret key when `HERALD_SECRET_KEY` is unset.
    pub fn from_env(env: &Env, dev: bool) -> Result<Self> {
        let secrets = match env.get("HERALD_SECRET_KEY") {
            Some(key) => SecretBox::from_base64(key, env.get("HERALD_SECRET_KEY_PREVIOUS"))?,
            None if dev => SecretBox::ephemeral(),
            None => {
                return Err(CommonError::Config(
                    "HERALD_SECRET_KEY is required (base64 of 32 random bytes, e.g. `openssl rand -base64 32`); pass --dev to run without one".into(),
                ))
            }
        };
        let retry_schedule = env
            .string("HERALD_RETRY_SCHEDULE", Self::DEFAULT_RETRY_SCHEDULE)
            .split(',')
            .map(|d| {
                parse_duration(d)
                    .ok_or_else(|| CommonError::Config(format!("HERALD_RETRY_SCHEDULE entry {d:?} is not a duration")))
            })
            .collect::<Result<Vec<_>>>()?;
        let partitions: u32 = env.parse("HERALD_PARTITIONS", 16)?;
        if !(1..=4096).contains(&partitions) {
            return Err(CommonError::Config("HERALD_PARTITIONS must be between 1 and 4096".into()));
        }
        let max_event_bytes: usize = env.parse("HERALD_MAX_EVENT_BYTES", 262_144)?;
        if max_event_bytes < 1024 {
            return Err(CommonError::Config("HERALD_MAX_EVENT_BYTES must be at least 1024".into()));
        }
        // The variable is in milliseconds; a unit ("15s") is accepted as well.
        let delivery_timeout = match env.get("HERALD_DELIVERY_TIMEOUT_MS").map(str::trim) {
            Some(raw) if raw.bytes().all(|b| b.is_ascii_digit()) => {
                Duration::from_millis(env.parse("HERALD_DELIVERY_TIMEOUT_MS", 15_000u64)?)
            }
            _ => env.duration("HERALD_DELIVERY_TIMEOUT_MS", "15000ms")?,
        };
        if delivery_timeout.is_zero() {
            return Err(CommonError::Config("HERALD_DELIVERY_TIMEOUT_MS must be positive".into()));
        }
        let allowed_cidrs = env
            .list("HERALD_ENDPOINT_ALLOWED_CIDRS")
            .iter()
            .map(|c| {
                c.parse::<IpNet>().map_err(|_| {
                    CommonError::Config(format!("HERALD_ENDPOINT_ALLOWED_CIDRS entry {c:?} is not a CIDR"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let allowed_ports = env
            .list("HERALD_ENDPOINT_ALLOWED_PORTS")
            .iter()
            .map(|p| {
                p.parse::<u16>().map_err(|_| {
                    CommonError::Config(format!("HERALD_ENDPOINT_ALLOWED_PORTS entry {p:?} is not a port"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let url_policy = UrlPolicy {
            allow_private_networks: env.flag("HERALD_ALLOW_PRIVATE_NETWORKS")?,
            allow_http: env.flag("HERALD_ALLOW_HTTP")?,
            allowed_ports,
            allowed_tlds: env
                .list("HERALD_ENDPOINT_ALLOWED_TLDS")
                .into_iter()
                .map(|t| t.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            allowed_cidrs,
        };
        let root_ca = match env.get("HERALD_REDIS_CA_FILE").filter(|p| !p.is_empty()) {
            Some(path) => Some(
                std::fs::read(path)
                    .map(std::sync::Arc::from)
                    .map_err(|e| CommonError::Config(format!("HERALD_REDIS_CA_FILE {path:?} cannot be read: {e}")))?,
            ),
            None => None,
        };
        let grpc_token = not_a_placeholder("HERALD_GRPC_TOKEN", env.get("HERALD_GRPC_TOKEN").map(str::trim))?;
        let grpc_token = grpc_token.map(str::to_owned);
        let grpc_publish_tokens = env.list("HERALD_GRPC_PUBLISH_TOKENS");
        for token in &grpc_publish_tokens {
            not_a_placeholder("HERALD_GRPC_PUBLISH_TOKENS", Some(token))?;
        }
        if !grpc_publish_tokens.is_empty() && grpc_token.is_none() {
            return Err(CommonError::Config(
                "HERALD_GRPC_PUBLISH_TOKENS needs HERALD_GRPC_TOKEN: without it Herald's own services could not call each other".into(),
            ));
        }
        if grpc_token.as_ref().is_some_and(|full| grpc_publish_tokens.contains(full)) {
            return Err(CommonError::Config("a HERALD_GRPC_PUBLISH_TOKENS entry equals HERALD_GRPC_TOKEN".into()));
        }
        let retry_after_max = env.duration("HERALD_RETRY_AFTER_MAX", "1h")?;
        let event_retention = env.duration("HERALD_EVENT_RETENTION", "72h")?;
        check_retention(event_retention, &retry_schedule, retry_after_max)?;
        let success_retention = match env.get("HERALD_SUCCESS_RETENTION") {
            Some(_) => env.duration("HERALD_SUCCESS_RETENTION", "")?,
            None => event_retention,
        };
        if success_retention.is_zero() || success_retention > event_retention {
            return Err(CommonError::Config(format!(
                "HERALD_SUCCESS_RETENTION ({}) must be positive and at most HERALD_EVENT_RETENTION ({})",
                format_duration(success_retention),
                format_duration(event_retention),
            )));
        }
        let header_read_timeout = env.duration("HERALD_HEADER_READ_TIMEOUT", "10s")?;
        if header_read_timeout.is_zero() {
            return Err(CommonError::Config("HERALD_HEADER_READ_TIMEOUT must be positive".into()));
        }
        let max_connections_per_peer: usize = env.parse("HERALD_MAX_CONNECTIONS_PER_PEER", 256)?;
        if max_connections_per_peer == 0 {
            return Err(CommonError::Config("HERALD_MAX_CONNECTIONS_PER_PEER must be at least 1".into()));
        }
        let prefix = env.string("HERALD_REDIS_PREFIX", "herald");
        if !crate::ids::is_valid_external_id(&prefix, 64) {
            return Err(CommonError::Config("HERALD_REDIS_PREFIX may hold only letters, digits, - _ . ~".into()));
        }
        Ok(HeraldConfig {
            redis: crate::redis_conn::RedisTarget {
                url: env.string("HERALD_REDIS_URL", "redis://127.0.0.1:6379"),
                cluster: env.list("HERALD_REDIS_CLUSTER_URLS"),
                root_ca,
            },
            redis_prefix: prefix,
            registry_listen: env.socket_addr("HERALD_REGISTRY_LISTEN", "0.0.0.0:50051")?,
            registry_admin_listen: env.socket_addr("HERALD_REGISTRY_ADMIN_LISTEN", "0.0.0.0:9101")?,
            dispatch_listen: env.socket_addr("HERALD_DISPATCH_LISTEN", "0.0.0.0:50052")?,
            dispatch_admin_listen: env.socket_addr("HERALD_DISPATCH_ADMIN_LISTEN", "0.0.0.0:9102")?,
            gateway_listen: env.socket_addr("HERALD_GATEWAY_LISTEN", "0.0.0.0:8080")?,
            registry_url: env.string("HERALD_REGISTRY_URL", "http://127.0.0.1:50051"),
            dispatch_url: env.string("HERALD_DISPATCH_URL", "http://127.0.0.1:50052"),
            admin_token: not_a_placeholder("HERALD_ADMIN_TOKEN", env.get("HERALD_ADMIN_TOKEN"))?.map(str::to_owned),
            grpc_token,
            grpc_publish_tokens,
            secrets,
            url_policy,
            partitions,
            delivery_timeout,
            retry_schedule,
            retry_after_max,
            max_event_bytes,
            max_batch_bytes: env.parse("HERALD_MAX_BATCH_BYTES", 1_048_576)?,
            event_retention,
            success_retention,
            idempotency_window: env.duration("HERALD_IDEMPOTENCY_WINDOW", "24h")?,
            default_max_in_flight: env.parse("HERALD_DEFAULT_MAX_IN_FLIGHT", 10)?,
            host_max_in_flight: env.parse("HERALD_HOST_MAX_IN_FLIGHT", 256)?,
            disable_after: env.duration("HERALD_DISABLE_AFTER", "5d")?,
            circuit_failures: env.parse::<u32>("HERALD_CIRCUIT_FAILURES", 20)?.max(1),
            circuit_failing_for: env.duration("HERALD_CIRCUIT_FAILING_FOR", "10s")?,
            circuit_cool_down: env.duration("HERALD_CIRCUIT_COOL_DOWN", "5s")?.max(Duration::from_millis(1)),
            circuit_max_cool_down: env.duration("HERALD_CIRCUIT_MAX_COOL_DOWN", "5m")?,
            max_endpoints_per_tenant: env.parse("HERALD_MAX_ENDPOINTS_PER_TENANT", 10_000)?,
            max_subscriptions_per_tenant: env.parse("HERALD_MAX_SUBSCRIPTIONS_PER_TENANT", 50_000)?,
            api_rate_limit: env.parse("HERALD_API_RATE_LIMIT", 0)?,
            header_read_timeout,
            max_connections_per_peer,
            catalog_dir: env.get("HERALD_CATALOG_DIR").map(std::path::PathBuf::from),
            webhook_origin: crate::origin::from_env(env)?,
            public_url: public_url(env)?,
            dev,
        })
    }
}

/// `HERALD_PUBLIC_URL`: an absolute http(s) URL, kept without a trailing `/`.
fn public_url(env: &Env) -> Result<Option<String>> {
    let Some(raw) = env.get("HERALD_PUBLIC_URL").filter(|v| !v.trim().is_empty()) else { return Ok(None) };
    let parsed = url::Url::parse(raw.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none());
    match parsed {
        Some(_) => Ok(Some(raw.trim().trim_end_matches('/').to_owned())),
        None => Err(CommonError::Config("HERALD_PUBLIC_URL must be an absolute http(s) URL without a query".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let cfg = HeraldConfig::from_env(&Env::default(), true).unwrap();
        assert_eq!(cfg.partitions, 16);
        assert_eq!(cfg.delivery_timeout, Duration::from_millis(15_000));
        assert_eq!(cfg.retry_schedule.len(), 10);
        assert_eq!(cfg.retry_after_max, Duration::from_secs(3600));
        assert_eq!(cfg.max_event_bytes, 262_144);
        assert_eq!(cfg.max_batch_bytes, 1_048_576);
        assert_eq!(cfg.gateway_listen.port(), 8080);
        assert!(!cfg.url_policy.allow_private_networks);
    }

    #[test]
    fn cluster_urls_select_cluster_mode_with_one_hash_tag() {
        let env = Env::from_pairs([("HERALD_REDIS_CLUSTER_URLS", "redis://10.0.0.1:7000, redis://10.0.0.2:7000")]);
        let cfg = HeraldConfig::from_env(&env, true).unwrap();
        assert_eq!(cfg.redis.cluster, ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
        // Every key hashes on the prefix alone, partition keys included.
        assert_eq!(cfg.keys().endpoint("ep_1"), "{herald}:ep:ep_1");
        assert_eq!(cfg.keys().partition_stream(3), "herald:{p3}:jobs");
        let env = Env::from_pairs([("HERALD_REDIS_CLUSTER_URLS", "")]);
        let cfg = HeraldConfig::from_env(&env, true).unwrap();
        assert!(!cfg.redis.is_cluster(), "an empty value means unset");
        assert_eq!(cfg.keys().endpoint("ep_1"), "herald:ep:ep_1");
    }

    #[test]
    fn publish_tokens_need_the_full_token() {
        let env = Env::from_pairs([("HERALD_GRPC_PUBLISH_TOKENS", "p1,p2")]);
        assert!(HeraldConfig::from_env(&env, true).unwrap_err().to_string().contains("HERALD_GRPC_TOKEN"));
        let env = Env::from_pairs([("HERALD_GRPC_PUBLISH_TOKENS", "p1, full"), ("HERALD_GRPC_TOKEN", "full")]);
        assert!(HeraldConfig::from_env(&env, true).is_err());
        let env = Env::from_pairs([("HERALD_GRPC_PUBLISH_TOKENS", "p1, p2,"), ("HERALD_GRPC_TOKEN", "full")]);
        assert_eq!(HeraldConfig::from_env(&env, true).unwrap().grpc_publish_tokens, ["p1", "p2"]);
        for key in ["HERALD_GRPC_TOKEN", "HERALD_ADMIN_TOKEN"] {
            let env = Env::from_pairs([(key, "REPLACE-ME-with-openssl-rand-hex-32")]);
            assert!(HeraldConfig::from_env(&env, true).unwrap_err().to_string().contains(key));
        }
        let env = Env::from_pairs([("HERALD_GRPC_PUBLISH_TOKENS", "REPLACE-ME-x"), ("HERALD_GRPC_TOKEN", "full")]);
        assert!(HeraldConfig::from_env(&env, true).is_err());
    }

    #[test]
    fn success_retention_defaults_to_and_stays_within_the_event_retention() {
        let cfg = HeraldConfig::from_env(&Env::default(), true).unwrap();
        assert_eq!(cfg.success_retention, cfg.event_retention);
        let env = Env::from_pairs([("HERALD_SUCCESS_RETENTION", "24h")]);
        assert_eq!(HeraldConfig::from_env(&env, true).unwrap().success_retention, Duration::from_secs(86_400));
        for raw in ["0s", "73h", "soon"] {
            let env = Env::from_pairs([("HERALD_SUCCESS_RETENTION", raw)]);
            let error = HeraldConfig::from_env(&env, true).unwrap_err().to_string();
            assert!(error.contains("HERALD_SUCCESS_RETENTION"), "{raw}: {error}");
        }
    }

    #[test]
    fn retention_must_outlast_the_retry_horizon() {
        // The defaults: 46h42m35s of delays, 56h03m06s with jitter, the
        // five delays under an hour raised to HERALD_RETRY_AFTER_MAX: 60h.
        let cfg = HeraldConfig::from_env(&Env::default(), true).unwrap();
        let horizon = retry_horizon(&cfg.retry_schedule, cfg.retry_after_max);
        assert!(horizon > Duration::from_secs(60 * 3600) && horizon < cfg.event_retention, "{horizon:?}");

        let env = Env::from_pairs([("HERALD_EVENT_RETENTION", "48h")]);
        let err = HeraldConfig::from_env(&env, true).unwrap_err().to_string();
        assert!(err.contains("HERALD_EVENT_RETENTION (2d)"), "{err}");
        assert!(err.contains(&format!("retry horizon ({})", format_duration(horizon))), "{err}");
        assert!(err.contains("HERALD_RETRY_SCHEDULE") && err.contains("HERALD_RETRY_AFTER_MAX (1h)"), "{err}");

        // Jitter counts: 10h of delays may take 12h.
        let env = Env::from_pairs([
            ("HERALD_RETRY_SCHEDULE", "10h"),
            ("HERALD_RETRY_AFTER_MAX", "1s"),
            ("HERALD_EVENT_RETENTION", "11h"),
        ]);
        assert!(HeraldConfig::from_env(&env, true).unwrap_err().to_string().contains("(12h)"));
        let env = Env::from_pairs([
            ("HERALD_RETRY_SCHEDULE", "10h"),
            ("HERALD_RETRY_AFTER_MAX", "1s"),
            ("HERALD_EVENT_RETENTION", "13h"),
        ]);
        assert!(HeraldConfig::from_env(&env, true).is_ok());
        // A long Retry-After stretches every step it may apply to.
        let env = Env::from_pairs([("HERALD_RETRY_AFTER_MAX", "12h")]);
        assert!(HeraldConfig::from_env(&env, true).is_err());
    }

    #[test]
    fn gateway_connection_limits_are_positive() {
        let cfg = HeraldConfig::from_env(&Env::default(), true).unwrap();
        assert_eq!((cfg.header_read_timeout, cfg.max_connections_per_peer), (Duration::from_secs(10), 256));
        for (key, value) in [("HERALD_HEADER_READ_TIMEOUT", "0s"), ("HERALD_MAX_CONNECTIONS_PER_PEER", "0")] {
            let err = HeraldConfig::from_env(&Env::from_pairs([(key, value)]), true).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn secret_key_is_required_outside_dev() {
        let err = HeraldConfig::from_env(&Env::default(), false).unwrap_err();
        assert!(err.to_string().contains("HERALD_SECRET_KEY"));
    }

    #[test]
    fn bad_values_are_named() {
        let env = Env::from_pairs([("HERALD_PARTITIONS", "lots")]);
        let err = HeraldConfig::from_env(&env, true).unwrap_err().to_string();
        assert!(err.contains("HERALD_PARTITIONS"), "{err}");
        let env = Env::from_pairs([("HERALD_RETRY_SCHEDULE", "5s,soon")]);
        assert!(HeraldConfig::from_env(&env, true).is_err());
        let env = Env::from_pairs([("HERALD_DELIVERY_TIMEOUT_MS", "250")]);
        assert_eq!(HeraldConfig::from_env(&env, true).unwrap().delivery_timeout, Duration::from_millis(250));
    }
}
