//! `herald listen`: a local webhook receiver for developing against Herald.
//! Every request is printed whole (method, path, headers, the body as
//! pretty JSON when it is JSON), its signature is checked when the secret
//! is known, and it is answered with the chosen status.
//!
//! Each request is printed as one block under a lock, so concurrent
//! deliveries never interleave their lines.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::CliError;
use crate::options::ListenArgs;
use crate::signature::{self, Secret};

struct Listener {
    secret: Option<Secret>,
    status: StatusCode,
    received: AtomicU64,
    stdout: Mutex<()>,
}

pub async fn run(args: ListenArgs) -> Result<(), CliError> {
    let ListenArgs { port, host, secret, status } = args;
    let secret =
        secret.as_deref().map(Secret::parse).transpose().map_err(|e| CliError::usage(format!("--secret: {e}")))?;
    let status = StatusCode::from_u16(status).map_err(|e| CliError::usage(format!("--status {status}: {e}")))?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .map_err(CliError::io(format!("listening on {host}:{port}")))?;
    let addr = listener.local_addr().map_err(CliError::io("reading the bound address"))?;
    let checking = if secret.is_some() { "checking signatures" } else { "not checking signatures (no --secret)" };
    crate::output::line(format!("listening on http://{addr}, answering {}, {checking}; Ctrl-C stops", status.as_u16()));
    let state = Arc::new(Listener { secret, status, received: AtomicU64::new(0), stdout: Mutex::new(()) });
    let app = axum::Router::new().fallback(receive).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // If the signal cannot be watched, run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
        .map_err(CliError::io("serving"))
}

async fn receive(
    State(state): State<Arc<Listener>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = state.received.fetch_add(1, Ordering::Relaxed) + 1;
    let text = describe(&state, n, &method, &uri, &headers, &body);
    {
        // A poisoned lock only means another print panicked; printing is still safe.
        let _guard = state.stdout.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    // The CloudEvents abuse-protection handshake asks before the first delivery.
    if method == Method::OPTIONS
        && let Some(origin) = headers.get("webhook-request-origin")
    {
        let mut response = StatusCode::OK.into_response();
        response.headers_mut().insert("webhook-allowed-origin", origin.clone());
        response.headers_mut().insert("webhook-allowed-rate", HeaderValue::from_static("*"));
        return response;
    }
    state.status.into_response()
}

fn describe(state: &Listener, n: u64, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> String {
    let mut out = String::new();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let _ = writeln!(out, "── #{n} {method} {path}");
    let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        for value in headers.get_all(name) {
            let _ = writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
    }
    out.push('\n');
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string()));
        }
        Err(_) if body.is_empty() => out.push_str("(no body)\n"),
        Err(_) => match std::str::from_utf8(body) {
            Ok(text) => {
                let _ = writeln!(out, "{text}");
            }
            Err(_) => {
                let _ = writeln!(out, "({} bytes, not UTF-8)", body.len());
            }
        },
    }
    if let Some(secret) = &state.secret {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let verdict = secret.verify(
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            body,
            signature::now(),
        );
        match verdict {
            Ok(()) => out.push_str("signature valid\n"),
            Err(reason) => {
                let _ = writeln!(out, "signature INVALID: {reason}");
            }
        }
    }
    let _ = writeln!(out, "→ {}\n", state.status.as_u16());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_delivery_is_printed_whole_with_its_verdict() {
        let state = Listener {
            secret: Some(Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()),
            status: StatusCode::NO_CONTENT,
            received: AtomicU64::new(0),
            stdout: Mutex::new(()),
        };
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.insert("webhook-timestamp", HeaderValue::from_static("1"));
        headers.insert("webhook-signature", HeaderValue::from_static("v1,AAAA"));
        let uri: Uri = "/hook?a=1".parse().unwrap();
        let text = describe(&state, 1, &Method::POST, &uri, &headers, br#"{"a":1}"#);
        assert!(text.starts_with("── #1 POST /hook?a=1\n"), "{text}");
        assert!(text.contains("webhook-id: msg_1\n"), "{text}");
        assert!(text.contains("{\n  \"a\": 1\n}\n"), "{text}");
        assert!(text.contains("signature INVALID: timestamp outside"), "{text}");
        assert!(text.ends_with("→ 204\n\n"), "{text}");
    }
}
