//! The one HTTP client every delivery and token request goes through.
//!
//! It is shared by all endpoint actors so connections are pooled and kept
//! alive per host. Its settings carry delivery rules from the contract:
//! rustls with TLS 1.2 or newer, no redirects followed, a per-request
//! timeout, and no proxy (a proxy would resolve names itself and slip past
//! the address check below).
//!
//! Server-side request forgery: endpoint URLs were checked when they were
//! registered, but DNS can answer differently later, so the client resolves
//! names through [`PolicyResolver`], which refuses the whole lookup when any
//! answer is an address [`UrlPolicy::permits_address`] does not permit.
//! reqwest does not resolve IP-literal hosts at all, so callers also apply
//! the static [`UrlPolicy::check`] to each URL (the endpoint keeps that
//! verdict from when it was loaded).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_common::url_policy::{UrlPolicy, UrlRejection};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::DispatchError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections are closed after this; most load balancers use 60–350 s.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per host. Many endpoints often share one host (a
/// receiver platform's hooks), each with up to `maxInFlight` requests: a
/// cap below what runs at once closes connections as they come back and
/// opens new ones for the next burst (at 100 endpoints × 10 in flight on one
/// host, a cap of 256 cost the dispatcher ~20 % of its CPU in connects).
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn build(policy: UrlPolicy, timeout: Duration) -> Result<reqwest::Client, DispatchError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(herald_common::USER_AGENT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(60))
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .timeout(timeout)
        .dns_resolver(Arc::new(PolicyResolver { policy: Arc::new(policy) }))
        .build()
        .map_err(DispatchError::HttpClient)
}

/// Resolves with the system resolver and refuses names that lead anywhere
/// the URL policy forbids.
#[derive(Debug)]
pub struct PolicyResolver {
    policy: Arc<UrlPolicy>,
}

#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("{0}")]
    Refused(UrlRejection),
    #[error("host has no addresses")]
    Empty,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0 is replaced by the URL's port by the connector.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(ResolveError::Empty.into());
            }
            for addr in &addrs {
                policy.permits_address(addr.ip()).map_err(ResolveError::Refused)?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok::<_, BoxError>(addrs)
        })
    }
}

/// Reads at most `limit` bytes of a response body and drops the rest, so a
/// huge answer costs no memory (its connection is then not reused).
pub async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match response.chunk().await? {
            Some(chunk) => {
                let take = chunk.len().min(limit - buf.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            None => break,
        }
    }
    Ok(buf)
}

/// A transport failure in words, without the URL (it may carry a token in
/// its query) and with the underlying cause, e.g. `connection failed: tcp
/// connect error: Connection refused (os error 111)`.
pub fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "reading the response failed"
    } else if err.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(err);
    let mut last = String::new();
    while let Some(cause) = source {
        let msg = cause.to_string();
        // hyper repeats its causes in parentheses ("client error (Connect)");
        // skipping exact repeats keeps the message readable.
        if !msg.is_empty() && msg != last {
            text.push_str(": ");
            text.push_str(&msg);
        }
        last = msg;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn strict() -> UrlPolicy {
        UrlPolicy { allow_http: true, ..UrlPolicy::default() }
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_to_loopback() {
        let resolver = PolicyResolver { policy: Arc::new(strict()) };
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Err(err) => err,
            Ok(_) => panic!("loopback must be refused"),
        };
        assert!(err.to_string().contains("non-public"), "{err}");
    }

    #[tokio::test]
    async fn resolver_allows_private_networks_when_configured() {
        let policy = UrlPolicy { allow_private_networks: true, ..strict() };
        let resolver = PolicyResolver { policy: Arc::new(policy) };
        let addrs: Vec<SocketAddr> = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => addrs.collect(),
            Err(err) => panic!("{err}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        let listed = UrlPolicy { allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()], ..strict() };
        assert!(listed.permits_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_ok());
    }

    #[tokio::test]
    async fn client_refuses_a_name_that_resolves_to_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = build(strict(), Duration::from_secs(2)).unwrap();
        let err = client.get(format!("http://localhost:{port}/")).send().await.unwrap_err();
        let text = describe(&err);
        assert!(text.contains("non-public address"), "{text}");
        assert!(!text.contains("localhost:"), "the URL stays out of the message: {text}");
    }

    #[tokio::test]
    async fn client_does_not_follow_redirects() {
        use axum::response::Redirect;
        let app = axum::Router::new().route("/", axum::routing::get(|| async { Redirect::temporary("/elsewhere") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let policy = UrlPolicy { allow_private_networks: true, ..strict() };
        let client = build(policy, Duration::from_secs(2)).unwrap();
        let resp = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(resp.status(), 307);
    }

    #[tokio::test]
    async fn read_prefix_stops_at_the_limit() {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "x".repeat(100_000) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = build(UrlPolicy { allow_private_networks: true, ..strict() }, Duration::from_secs(2)).unwrap();
        let resp = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(read_prefix(resp, 1024).await.unwrap().len(), 1024);
    }
}
