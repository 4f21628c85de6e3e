//! Slow and greedy clients at the gateway, over raw TCP: a connection that
//! does not send a whole request head in time is closed, and a peer holding
//! its quota of connections has every extra one closed at once.

use std::time::Duration;

use herald_tests::{Services, Stack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Only the gateway: `/healthz` needs nothing behind it.
const GATEWAY: Services = Services { registry: false, dispatch: false, gateway: true };
/// How long a closed connection may take to be seen closed.
const PROMPT: Duration = Duration::from_secs(5);

async fn gateway(customise: impl FnOnce(&mut herald_common::config::Env)) -> (Stack, String) {
    let stack = Stack::start_services_with(GATEWAY, customise).await;
    let addr = stack.gateway_url.trim_start_matches("http://").to_owned();
    (stack, addr)
}

/// Reads until the peer closes (or resets) the connection, for at most
/// `within`; answers whether it did.
async fn closes(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

/// A connection from `127.0.0.2`: a peer of its own, apart from the
/// harness's clients on `127.0.0.1` (whose pooled connections count too).
async fn connect_as_other_peer(addr: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse().unwrap())?;
    socket.connect(addr.parse().unwrap()).await
}

/// `GET /healthz` on `stream`, keeping it open; answers the status line.
async fn healthz(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PROMPT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

/// With `HERALD_HEADER_READ_TIMEOUT=1s`: a client that sends half a request
/// head and stalls, and one that sends nothing, are disconnected within the
/// timeout and a margin, while a whole request on another connection is
/// answered.
#[tokio::test]
async fn a_client_stalling_in_its_request_head_is_disconnected() {
    let (stack, addr) = gateway(|env| env.set("HERALD_HEADER_READ_TIMEOUT", "1s")).await;
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: gate").await.unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut whole = TcpStream::connect(&addr).await.unwrap();
    assert!(healthz(&mut whole).await.starts_with("HTTP/1.1 200"));

    let bound = Duration::from_secs(1) + PROMPT;
    assert!(closes(&mut half, bound).await, "half a request head kept its connection past {bound:?}");
    assert!(closes(&mut silent, bound).await, "a silent connection was kept past {bound:?}");
    // An idle keep-alive connection waits for its next head as long, no longer.
    assert!(closes(&mut whole, bound).await, "an idle connection was kept past {bound:?}");
    let mut next = TcpStream::connect(&addr).await.unwrap();
    assert!(healthz(&mut next).await.starts_with("HTTP/1.1 200"));
    stack.stop().await;
}

/// With `HERALD_MAX_CONNECTIONS_PER_PEER=3`: three connections from one
/// address are served, a fourth and fifth from it are closed at once while
/// another address is still served, and closing one of the three makes
/// room again.
#[tokio::test]
async fn connections_beyond_the_per_peer_bound_are_closed() {
    let (stack, addr) = gateway(|env| {
        env.set("HERALD_MAX_CONNECTIONS_PER_PEER", "3");
        env.set("HERALD_HEADER_READ_TIMEOUT", "60s");
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_as_other_peer(&addr).await.unwrap();
        assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    for _ in 0..2 {
        let mut extra = connect_as_other_peer(&addr).await.unwrap();
        // Whether the request is written before the close or not, nothing answers it.
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n").await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(PROMPT, extra.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "an extra connection was kept open");
        assert!(buf.is_empty(), "an extra connection was served: {}", String::from_utf8_lossy(&buf));
    }
    for stream in &mut open {
        assert!(healthz(stream).await.starts_with("HTTP/1.1 200"), "the first three stay served");
    }
    let mut elsewhere = TcpStream::connect(&addr).await.unwrap();
    assert!(healthz(&mut elsewhere).await.starts_with("HTTP/1.1 200"), "another peer is not bounded by this one");

    drop(open.pop());
    let served = crate::support::wait_until("a freed slot to be taken again", || {
        let addr = addr.clone();
        async move {
            let mut stream = connect_as_other_peer(&addr).await.ok()?;
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n").await.ok()?;
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(PROMPT, stream.read(&mut buf)).await.ok()?.ok()?;
            (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    })
    .await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    stack.stop().await;
}
