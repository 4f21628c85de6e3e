//! The gateway's listener: accepts connections and serves each with hyper,
//! HTTP/1.1 and HTTP/2, under two bounds that `axum::serve` does not set.
//!
//! - **Request heads arrive in time.** A client that has not sent a whole
//!   request head within `HERALD_HEADER_READ_TIMEOUT` is disconnected:
//!   hyper's HTTP/1 header-read timer covers every head on a connection,
//!   and a deadline on the connection's first request covers what comes
//!   before hyper reads a head at all (a client that sends nothing, or
//!   stalls inside the HTTP/2 preface while the protocol is being told).
//!   Without it, a few thousand idle sockets hold the gateway's file
//!   descriptors for as long as their peers like.
//! - **One peer cannot take every connection.** At most
//!   `HERALD_MAX_CONNECTIONS_PER_PEER` connections are open per peer
//!   address; one over it is closed as soon as it is accepted.
//!
//! Shutdown is graceful as before: the listener stops accepting, every
//! connection finishes the request it is serving, and `serve` returns when
//! the last one has closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long accepting pauses after an error (such as running out of file
/// descriptors), so a persistent one does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The bounds [`serve`] keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub connections_per_peer: usize,
}

/// Open connections per peer address.
#[derive(Debug, Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One open connection of a peer, counted until it is dropped.
#[derive(Debug)]
struct Slot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one more connection from `ip`, unless it has `max` open.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        // An IPv4 peer reaching a dual-stack socket is the same peer.
        let ip = ip.to_canonical();
        let mut open = self.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot { peers: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.peers.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets the
/// open connections finish and returns.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let peers = Arc::new(Peers::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(slot) = peers.admit(peer.ip(), limits.connections_per_peer) else {
            metrics::counter!("herald_http_connections_refused_total", "reason" => "peer_limit").increment(1);
            tracing::debug!(peer = %peer.ip(), "connection refused: too many open from this peer");
            continue;
        };
        // Small answers go out at once rather than waiting for more to send.
        let _ = stream.set_nodelay(true);
        let first_request = Arc::new(AtomicBool::new(false));
        let seen = first_request.clone();
        let service = TowerToHyperService::new(app.clone().map_request(move |request: Request<Incoming>| {
            seen.store(true, Ordering::Release);
            request.map(Body::new)
        }));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        let deadline = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = tokio::time::sleep(deadline) => {}
            }
            if !first_request.load(Ordering::Acquire) {
                // Dropping the connection closes the socket.
                metrics::counter!("herald_http_connections_refused_total", "reason" => "header_timeout").increment(1);
                tracing::debug!(peer = %peer.ip(), "connection closed: no request head in time");
                return;
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_bounded_and_slots_free_on_drop() {
        let peers = Arc::new(Peers::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = peers.admit(a, 2).unwrap();
        let _second = peers.admit(a, 2).unwrap();
        assert!(peers.admit(a, 2).is_none(), "a third from the same peer");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(peers.admit(mapped, 2).is_none(), "the same peer over IPv6");
        let _other = peers.admit(b, 2).unwrap();
        drop(first);
        assert!(peers.admit(a, 2).is_some(), "a closed connection frees its slot");
        drop(_other);
        assert!(!peers.lock().contains_key(&b), "a peer with nothing open is forgotten");
    }
}
