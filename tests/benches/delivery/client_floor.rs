//! The dispatcher's floor: what posting a delivery costs Herald's HTTP
//! client with nothing else around it.
//!
//! A child process (this benchmark binary again, `--client-floor-child`)
//! builds the dispatcher's own client (`send::http_client::build`, one per
//! thread as the dispatcher's actor threads have) and posts a captured
//! Herald delivery to the receiver from that many current-thread runtimes,
//! reading each answer as an attempt does. It prints its CPU seconds over
//! the sends alone, so the parent can set the dispatcher's CPU per delivery
//! beside the part of it no change to Herald's own code can remove.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use herald_common::url_policy::UrlPolicy;
use herald_dispatch::send::attempt::RESPONSE_BODY_LIMIT;
use herald_dispatch::send::http_client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::Captured;

pub const CHILD_FLAG: &str = "--client-floor-child";

/// What the child measured.
pub struct Floor {
    pub requests: usize,
    pub secs: f64,
    pub cpu_secs: f64,
}

impl Floor {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    pub fn cpu_us_per_request(&self) -> f64 {
        self.cpu_secs / self.requests as f64 * 1e6
    }
}

/// Runs the child against `url` with `sample`, `requests` in all and
/// `in_flight` at once over the threads the dispatcher would use.
pub async fn measure(sample: &Captured, url: &str, requests: usize, in_flight: usize, dir: &Path) -> Result<Floor> {
    let file = dir.join("floor-request");
    std::fs::write(&file, encode(sample))?;
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(url)
        .arg(&file)
        .arg(requests.to_string())
        .arg(in_flight.to_string())
        .output()
        .await
        .context("starting the client floor child")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("client floor child failed ({}): {}{}", output.status, text, String::from_utf8_lossy(&output.stderr));
    }
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next().and_then(|f| f.ok()).ok_or_else(|| anyhow!("client floor child printed {text:?}"));
    Ok(Floor { requests: next()? as usize, secs: next()?, cpu_secs: next()? })
}

/// The child's whole life: `args` are what [`measure`] passes after the flag.
pub fn child(args: &[String]) -> Result<()> {
    let [url, file, requests, in_flight] = args else {
        bail!("{CHILD_FLAG} URL FILE REQUESTS IN_FLIGHT");
    };
    let url = reqwest::Url::parse(url)?;
    let (headers, body) = decode(&std::fs::read(file)?)?;
    let requests: usize = requests.parse()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = in_flight.parse::<usize>()?.div_ceil(threads).max(1);
    let issued = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // The dispatcher's settings, loopback allowed as in its tests.
    let policy = || UrlPolicy { allow_private_networks: true, ..UrlPolicy::default() };

    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (url, headers, body) = (url.clone(), headers.clone(), body.clone());
            let (issued, failed) = (issued.clone(), failed.clone());
            let client = http_client::build(policy(), Duration::from_secs(30));
            std::thread::spawn(move || -> Result<()> {
                let client = client?;
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let local = tokio::task::LocalSet::new();
                let shared = Rc::new((client, url, headers, body));
                local.block_on(&runtime, async move {
                    let senders: Vec<_> = (0..per_thread)
                        .map(|_| {
                            let (shared, issued, failed) = (shared.clone(), issued.clone(), failed.clone());
                            tokio::task::spawn_local(async move {
                                let (client, url, headers, body) = &*shared;
                                while issued.fetch_add(1, Ordering::Relaxed) < requests {
                                    if !post(client, url, headers, body).await {
                                        failed.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            })
                        })
                        .collect();
                    for sender in senders {
                        let _ = sender.await;
                    }
                });
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| anyhow!("a floor thread panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu_before;
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {requests} floor requests failed");
    }
    println!("{requests} {secs} {cpu}");
    Ok(())
}

/// One attempt's HTTP part: the request built whole and moved in, the
/// status read and the answer's first bytes kept.
async fn post(client: &reqwest::Client, url: &reqwest::Url, headers: &HeaderMap, body: &Bytes) -> bool {
    let mut request = reqwest::Request::new(reqwest::Method::POST, url.clone());
    *request.headers_mut() = headers.clone();
    *request.body_mut() = Some(body.clone().into());
    match client.execute(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok && http_client::read_prefix(response, RESPONSE_BODY_LIMIT).await.is_ok()
        }
        Err(_) => false,
    }
}

fn own_cpu_seconds() -> f64 {
    crate::machine::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Header lines (`name: value`), a blank line, then the body.
fn encode((headers, body): &Captured) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in crate::replayed_headers(headers) {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

fn decode(bytes: &[u8]) -> Result<(HeaderMap, Bytes)> {
    let split = bytes.windows(2).position(|w| w == b"\n\n").ok_or_else(|| anyhow!("no blank line"))?;
    let mut headers = HeaderMap::new();
    for line in std::str::from_utf8(&bytes[..split])?.lines() {
        let (name, value) = line.split_once(": ").ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.append(HeaderName::from_bytes(name.as_bytes())?, HeaderValue::from_str(value)?);
    }
    Ok((headers, Bytes::copy_from_slice(&bytes[split + 2..])))
}
