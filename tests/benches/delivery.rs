//! Herald's delivery benchmark: `./deploy/bench.sh` (or
//! `cargo bench -p herald-tests --bench delivery -- --help`).
//!
//! Everything runs on this machine and talks only to loopback: a
//! `redis-server` (AOF on, `appendfsync everysec`) in a temporary directory,
//! the three release binaries as child processes, and an in-process HTTP
//! receiver that answers `204` and records when each delivery arrived. The
//! physical limit is measured in the same run by `wrk` posting a captured
//! Herald delivery (same headers, same body) to the same receiver; every
//! Herald throughput is printed as a ratio to it.
//!
//! Scenarios: unicast (each event to one endpoint), fan-out (each event to
//! every endpoint), publish-to-receipt latency at a light load, dispatcher
//! memory per live actor, and unicast throughput as the endpoint count grows.
//! Receipts are counted and deduplicated, so a lost delivery shows.
//!
//! With `--cluster` Redis is a three-master Redis Cluster and two
//! dispatchers share the partitions (`delivery/cluster.rs`); every figure
//! read from Redis or the dispatcher is then summed over them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "delivery/client_floor.rs"]
mod client_floor;
#[path = "delivery/cluster.rs"]
mod cluster;
#[path = "delivery/machine.rs"]
mod machine;
#[path = "delivery/redis_cost.rs"]
mod redis_cost;
#[path = "delivery/services.rs"]
mod services;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use cluster::RedisNodes;
use futures::StreamExt;
use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{
    CreateEndpointRequest, CreateSubscriptionRequest, CreateTenantRequest, EndpointSpec, EventType,
    PublishBatchRequest, PublishRequest,
};
use machine::{Cpu, Pids, machine_info, nproc};
use redis_cost::RedisCost;
use services::{Guarded, TempDir, log_summary, start_services};
use tonic::transport::Channel;

const ADMIN_TOKEN: &str = "bench-admin-token";
/// Fleet id the `wrk` requests are counted under (Herald fleets start at 1).
const WRK_FLEET: usize = 0;
const MAX_FLEETS: usize = 256;

// ---------------------------------------------------------------- arguments

#[derive(Clone, Debug)]
struct Args {
    only: Option<Vec<String>>,
    unicast_endpoints: usize,
    unicast_events: usize,
    batch: usize,
    publish_concurrency: usize,
    fanout_endpoints: usize,
    fanout_events: usize,
    latency_rate: u64,
    latency_secs: u64,
    memory_endpoints: usize,
    idle_wait_secs: u64,
    growth: Vec<usize>,
    growth_events: usize,
    wrk_threads: usize,
    wrk_connections: usize,
    wrk_secs: u64,
    floor_requests: usize,
    floor_in_flight: Option<usize>,
    routing: Routing,
    payload_bytes: usize,
    create_concurrency: usize,
    timeout_secs: u64,
    perf: Option<PathBuf>,
    setup_grpc: bool,
    service_env: Vec<(String, String)>,
    keep: bool,
    cluster: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            only: None,
            unicast_endpoints: 100,
            unicast_events: 20_000,
            batch: 500,
            publish_concurrency: 4,
            fanout_endpoints: 100,
            fanout_events: 200,
            latency_rate: 100,
            latency_secs: 10,
            memory_endpoints: 10_000,
            idle_wait_secs: 330,
            growth: vec![10, 100, 1_000, 10_000],
            growth_events: 10_000,
            wrk_threads: 2,
            wrk_connections: 64,
            wrk_secs: 5,
            floor_requests: 40_000,
            floor_in_flight: None,
            routing: Routing::Filter,
            payload_bytes: 256,
            create_concurrency: 32,
            timeout_secs: 180,
            perf: None,
            setup_grpc: false,
            service_env: Vec::new(),
            keep: false,
            cluster: false,
        }
    }
}

const USAGE: &str = "\
Herald delivery benchmark. Every count has a default; all are optional.

  --only LIST                 comma list of: unicast,fanout,latency,memory,growth (the wrk limit always runs)
  --unicast-endpoints N       endpoints in the unicast scenario (100)
  --unicast-events N          events published in the unicast scenario (20000)
  --batch N                   events per PublishBatch call (500)
  --publish-concurrency N     PublishBatch calls in flight (4)
  --fanout-endpoints N        endpoints every fan-out event goes to (100)
  --fanout-events N           events published in the fan-out scenario (200)
  --latency-rate N            events per second in the latency scenario (100)
  --latency-secs N            length of the latency scenario (10)
  --memory-endpoints N        live actors in the memory scenario (10000; try 100000)
  --idle-wait-secs N          longest watch of the dispatcher after the actors go quiet; ends early when
                              its live-actor gauge reaches 0 (330: the dispatcher stops actors idle 300s)
  --growth LIST               endpoint counts of the cost-growth scenario (10,100,1000,10000)
  --growth-events N           events per cost-growth step (10000)
  --wrk-threads N / --wrk-connections N / --wrk-secs N   the receiver limit run (2 / 64 / 5)
  --floor-requests N          requests of the client floor run: the dispatcher's HTTP client alone, as many
                              in flight as wrk's connections (40000; 0 skips it)
  --floor-in-flight N         requests in flight in the client floor run (wrk's connections)
  --routing filter|types      unicast and cost-growth routing: one event type with a `data.target`
                              filter per subscription, or one event type per endpoint (filter);
                              the memory scenario always uses one event type per endpoint
  --payload-bytes N           approximate size of each event's `data` (256)
  --create-concurrency N      calls in flight while creating endpoints (32)
  --setup rest|grpc           create tenants, endpoints and subscriptions over the admin REST API
                              or straight over gRPC, without starting the gateway (rest)
  --timeout-secs N            longest wait for the deliveries of one scenario (180)
  --perf FILE                 record the dispatcher (both with --cluster) with `perf record --call-graph dwarf` into FILE
                              during the unicast scenario (`perf report -i FILE` reads it)
  --service-env KEY=VALUE     extra environment for the three services (repeatable)
  --cluster                   run against a three-master Redis Cluster on loopback (HERALD_REDIS_CLUSTER_URLS)
                              with two dispatchers: Redis commands, memory and CPU are summed over the three
                              masters, dispatcher CPU and settlements over both dispatchers, and the report
                              shows how many partition streams each master holds
  --keep                      keep the temporary directory (Redis data, service logs)
";

fn parse_args() -> Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` appends `--bench`; a harness-less target ignores it.
        if flag == "--bench" {
            continue;
        }
        if flag == "--help" || flag == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--keep" {
            args.keep = true;
            continue;
        }
        if flag == "--cluster" {
            args.cluster = true;
            continue;
        }
        let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        let num = |v: &str| -> Result<usize> {
            v.replace('_', "").parse::<usize>().with_context(|| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--only" => args.only = Some(value.split(',').map(|s| s.trim().to_owned()).collect()),
            "--unicast-endpoints" => args.unicast_endpoints = num(&value)?,
            "--unicast-events" => args.unicast_events = num(&value)?,
            "--batch" => args.batch = num(&value)?.max(1),
            "--publish-concurrency" => args.publish_concurrency = num(&value)?.max(1),
            "--fanout-endpoints" => args.fanout_endpoints = num(&value)?,
            "--fanout-events" => args.fanout_events = num(&value)?,
            "--latency-rate" => args.latency_rate = num(&value)?.max(1) as u64,
            "--latency-secs" => args.latency_secs = num(&value)? as u64,
            "--memory-endpoints" => args.memory_endpoints = num(&value)?,
            "--idle-wait-secs" => args.idle_wait_secs = num(&value)? as u64,
            "--growth" => {
                args.growth =
                    value.split(',').filter(|s| !s.trim().is_empty()).map(|s| num(s.trim())).collect::<Result<_>>()?
            }
            "--growth-events" => args.growth_events = num(&value)?,
            "--wrk-threads" => args.wrk_threads = num(&value)?.max(1),
            "--wrk-connections" => args.wrk_connections = num(&value)?.max(1),
            "--wrk-secs" => args.wrk_secs = num(&value)?.max(1) as u64,
            "--floor-requests" => args.floor_requests = num(&value)?,
            "--floor-in-flight" => args.floor_in_flight = Some(num(&value)?.max(1)),
            "--routing" => {
                args.routing = match value.as_str() {
                    "filter" => Routing::Filter,
                    "types" => Routing::Types,
                    other => bail!("--routing: filter or types, not {other}"),
                }
            }
            "--payload-bytes" => args.payload_bytes = num(&value)?,
            "--create-concurrency" => args.create_concurrency = num(&value)?.max(1),
            "--timeout-secs" => args.timeout_secs = num(&value)?.max(1) as u64,
            "--perf" => args.perf = Some(PathBuf::from(value)),
            "--setup" => {
                args.setup_grpc = match value.as_str() {
                    "rest" => false,
                    "grpc" => true,
                    other => bail!("--setup: rest or grpc, not {other}"),
                }
            }
            "--service-env" => {
                let (k, v) = value.split_once('=').ok_or_else(|| anyhow!("--service-env wants KEY=VALUE"))?;
                args.service_env.push((k.to_owned(), v.to_owned()));
            }
            other => bail!("unknown flag {other}\n\n{USAGE}"),
        }
    }
    Ok(args)
}

impl Args {
    fn runs(&self, scenario: &str) -> bool {
        match &self.only {
            None => true,
            Some(list) => list.iter().any(|s| s == scenario),
        }
    }

    /// The `./deploy/bench.sh` line (in backticks) that measures a figure
    /// again: `flags` (each with a leading space) after `--cluster` when set.
    fn command(&self, flags: &str) -> String {
        let cluster = if self.cluster { " --cluster" } else { "" };
        format!("`./deploy/bench.sh{cluster}{flags}`")
    }

    /// What the services see for `key`: the last `--service-env` for it.
    fn service_setting(&self, key: &str) -> Option<&str> {
        self.service_env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------- receiver

/// Headers and body of one delivery.
type Captured = (Vec<(String, String)>, Vec<u8>);

#[derive(Clone, Copy)]
struct Arrival {
    fleet: u16,
    endpoint: u32,
    seq: u64,
    at_ns: u64,
}

/// What the receiver saw: every arrival with its time, and raw counts per
/// fleet for cheap waiting.
struct Sink {
    epoch: Instant,
    arrivals: Mutex<Vec<Arrival>>,
    per_fleet: Vec<AtomicU64>,
    unparsed: AtomicU64,
    /// The first Herald delivery, replayed by `wrk` as the physical limit.
    sample: OnceLock<Captured>,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            epoch: Instant::now(),
            arrivals: Mutex::new(Vec::with_capacity(1 << 20)),
            per_fleet: (0..MAX_FLEETS).map(|_| AtomicU64::new(0)).collect(),
            unparsed: AtomicU64::new(0),
            sample: OnceLock::new(),
        }
    }

    fn raw(&self, fleet: u16) -> u64 {
        self.per_fleet[usize::from(fleet)].load(Ordering::Acquire)
    }

    fn instant(&self, at_ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(at_ns)
    }

    /// Arrivals of `fleet` whose sequence number is in `seqs`.
    fn collect(&self, fleet: u16, seqs: std::ops::Range<u64>) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().iter().filter(|a| a.fleet == fleet && seqs.contains(&a.seq)).copied().collect()
    }
}

/// `/h/<fleet>/<endpoint>` → (fleet, endpoint); `/wrk` → the wrk fleet.
fn parse_path(path: &str) -> Option<(u16, u32)> {
    if path.starts_with("/wrk") {
        return Some((WRK_FLEET as u16, 0));
    }
    let mut parts = path.strip_prefix("/h/")?.split('/');
    let fleet = parts.next()?.parse().ok()?;
    let endpoint = parts.next()?.parse().ok()?;
    Some((fleet, endpoint))
}

/// The `bseq` number of the event's data, found without parsing the JSON.
fn parse_seq(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"bseq\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let mut digits = body[at..].iter().skip_while(|b| b.is_ascii_whitespace() || **b == b':').peekable();
    let mut n: u64 = 0;
    let mut any = false;
    while let Some(&&b) = digits.peek() {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
        digits.next();
    }
    any.then_some(n)
}

async fn receive(State(sink): State<Arc<Sink>>, request: Request) -> StatusCode {
    let at_ns = sink.epoch.elapsed().as_nanos() as u64;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::BAD_REQUEST;
    };
    let Some((fleet, endpoint)) = parse_path(parts.uri.path()) else {
        sink.unparsed.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NO_CONTENT;
    };
    if usize::from(fleet) != WRK_FLEET {
        if sink.sample.get().is_none() {
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let _ = sink.sample.set((headers, body.to_vec()));
        }
        let seq = parse_seq(&body).unwrap_or(u64::MAX);
        sink.arrivals.lock().unwrap().push(Arrival { fleet, endpoint, seq, at_ns });
    }
    if let Some(counter) = sink.per_fleet.get(usize::from(fleet)) {
        counter.fetch_add(1, Ordering::Release);
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver(sink: Arc<Sink>) -> Result<SocketAddr> {
    let app = axum::Router::new().fallback(receive).with_state(sink);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

// ---------------------------------------------------------------- fleets

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Routing {
    /// One event type; each subscription filters on `data.target`.
    Filter,
    /// One event type per endpoint.
    Types,
    /// One event type; every subscription takes every event.
    Broadcast,
}

/// A tenant with `n` endpoints on the receiver, each subscribed so that the
/// fleet's events reach it as `routing` says.
struct Fleet {
    id: u16,
    tenant: String,
    n: usize,
    routing: Routing,
    setup_secs: f64,
}

impl Fleet {
    fn event_type(&self, target: usize) -> String {
        match self.routing {
            Routing::Types => format!("bench.f{}.{target}", self.id),
            Routing::Filter | Routing::Broadcast => format!("bench.f{}", self.id),
        }
    }
}

/// Creates what a fleet needs: over the admin REST API (the default), or
/// straight over gRPC with `--setup grpc`.
struct Admin {
    http: reqwest::Client,
    base: String,
    grpc: Option<RegistryClient<Channel>>,
}

/// `ALREADY_EXISTS` is fine: the benchmark only needs the thing to be there.
fn created<T>(answer: std::result::Result<tonic::Response<T>, tonic::Status>, what: &str) -> Result<Option<T>> {
    match answer {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(None),
        Err(s) => bail!("{what}: {}: {}", s.code(), s.message()),
    }
}

impl Admin {
    async fn tenant(&self, id: &str) -> Result<()> {
        if let Some(grpc) = &self.grpc {
            let request = CreateTenantRequest { id: id.to_owned(), name: format!("benchmark {id}") };
            created(grpc.clone().create_tenant(request).await, "CreateTenant")?;
            return Ok(());
        }
        self.post("/v1/tenants", serde_json::json!({"id": id, "name": format!("benchmark {id}")})).await.map(drop)
    }

    async fn event_type(&self, name: &str) -> Result<()> {
        if let Some(grpc) = &self.grpc {
            let request =
                EventType { name: name.to_owned(), description: "benchmark".to_owned(), ..EventType::default() };
            created(grpc.clone().create_event_type(request).await, "CreateEventType")?;
            return Ok(());
        }
        self.post("/v1/event-types", serde_json::json!({"name": name, "description": "benchmark"})).await.map(drop)
    }

    /// Creates an endpoint and its one subscription.
    async fn endpoint(&self, tenant: &str, url: String, event_type: String, filter: Option<String>) -> Result<()> {
        if let Some(grpc) = &self.grpc {
            let spec = EndpointSpec { url, description: "benchmark".to_owned(), ..EndpointSpec::default() };
            let request = CreateEndpointRequest { tenant: tenant.to_owned(), spec: Some(spec), id: String::new() };
            let answer = created(grpc.clone().create_endpoint(request).await, "CreateEndpoint")?;
            let endpoint_id = answer
                .and_then(|a| a.endpoint)
                .map(|e| e.id)
                .ok_or_else(|| anyhow!("CreateEndpoint answered no endpoint"))?;
            let request = CreateSubscriptionRequest {
                tenant: tenant.to_owned(),
                endpoint_id,
                event_types: vec![event_type],
                filter: filter
                    .map(|t| serde_json::json!({"data.target": t}).to_string().into_bytes())
                    .unwrap_or_default(),
                metadata: HashMap::new(),
            };
            created(grpc.clone().create_subscription(request).await, "CreateSubscription")?;
            return Ok(());
        }
        let endpoint = self
            .post(
                &format!("/v1/endpoints?tenant={tenant}"),
                serde_json::json!({"url": url, "description": "benchmark"}),
            )
            .await?;
        let endpoint_id = endpoint["id"].as_str().ok_or_else(|| anyhow!("endpoint answer without id: {endpoint}"))?;
        let mut subscription = serde_json::json!({"endpointId": endpoint_id, "eventTypes": [event_type]});
        if let Some(target) = filter {
            subscription["filter"] = serde_json::json!({"data.target": target});
        }
        self.post(&format!("/v1/subscriptions?tenant={tenant}"), subscription).await.map(drop)
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self.http.post(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN).json(&body).send().await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(r.json().await.unwrap_or(serde_json::Value::Null)),
                Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => return Ok(serde_json::Value::Null),
                // Pushed back (rate limit or a dependency busy): wait, then try again a few times.
                Ok(r) if (r.status() == 429 || r.status() == 503) && attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Ok(r) => {
                    let status = r.status();
                    bail!("POST {path} answered {status}: {}", r.text().await.unwrap_or_default())
                }
                Err(e) if attempt < 3 => {
                    eprintln!("POST {path}: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e).context(format!("POST {path}")),
            }
        }
    }
}

struct Bench {
    args: Args,
    admin: Admin,
    registry: RegistryClient<Channel>,
    receiver: SocketAddr,
    sink: Arc<Sink>,
    pids: Pids,
    /// Every dispatcher's admin URL, the first one's first.
    dispatch_admin_urls: Vec<String>,
    /// Reads Redis's own counters around each scenario: one connection per
    /// server (per master on a cluster).
    redis: Vec<redis::aio::MultiplexedConnection>,
    next_fleet: u16,
    next_seq: u64,
    lost: Vec<String>,
}

impl Bench {
    async fn fleet(&mut self, n: usize, routing: Routing) -> Result<Fleet> {
        self.next_fleet += 1;
        let id = self.next_fleet;
        let started = Instant::now();
        let fleet = Fleet { id, tenant: format!("bench-f{id}"), n, routing, setup_secs: 0.0 };
        self.admin.tenant(&fleet.tenant).await?;
        let types: Vec<String> = match routing {
            Routing::Types => (0..n).map(|t| fleet.event_type(t)).collect(),
            Routing::Filter | Routing::Broadcast => vec![fleet.event_type(0)],
        };
        let admin = &self.admin;
        let mut calls = futures::stream::iter(types)
            .map(|name| async move { admin.event_type(&name).await })
            .buffer_unordered(self.args.create_concurrency);
        while let Some(r) = calls.next().await {
            r?;
        }
        drop(calls);
        let receiver = self.receiver;
        let fleet_ref = &fleet;
        let mut calls = futures::stream::iter(0..n)
            .map(|t| async move {
                let filter = (routing == Routing::Filter).then(|| t.to_string());
                let url = format!("http://{receiver}/h/{id}/{t}");
                admin.endpoint(&fleet_ref.tenant, url, fleet_ref.event_type(t), filter).await
            })
            .buffer_unordered(self.args.create_concurrency);
        while let Some(r) = calls.next().await {
            r?;
        }
        drop(calls);
        let setup_secs = started.elapsed().as_secs_f64();
        eprintln!("fleet {id}: {n} endpoints ({routing:?}) set up in {setup_secs:.1}s");
        Ok(Fleet { setup_secs, ..fleet })
    }

    fn event(&self, fleet: &Fleet, target: usize, seq: u64) -> PublishRequest {
        let pad = "x".repeat(self.args.payload_bytes.saturating_sub(48));
        PublishRequest {
            tenant: fleet.tenant.clone(),
            id: String::new(),
            r#type: fleet.event_type(target),
            resource: Vec::new(),
            data: format!(r#"{{"target":"{target}","bseq":{seq},"pad":"{pad}"}}"#).into_bytes(),
            time: None,
            ..Default::default()
        }
    }

    fn take_seqs(&mut self, count: usize) -> std::ops::Range<u64> {
        let start = self.next_seq;
        self.next_seq += count as u64;
        start..self.next_seq
    }

    /// Publishes `seqs` to `fleet` in batches (event k to endpoint k mod n)
    /// and waits for `expected` distinct receipts.
    async fn publish_and_wait(&mut self, fleet: &Fleet, events: usize, expected: u64, label: &str) -> Result<Run> {
        let seqs = self.take_seqs(events);
        let raw_before = self.sink.raw(fleet.id);
        let requests: Vec<PublishRequest> =
            seqs.clone().map(|s| self.event(fleet, (s - seqs.start) as usize % fleet.n.max(1), s)).collect();
        let batches: Vec<Vec<PublishRequest>> = requests.chunks(self.args.batch).map(<[_]>::to_vec).collect();
        let http = self.admin.http.clone();
        let settled_before = redis_cost::settled_attempts(&http, &self.dispatch_admin_urls).await;
        let redis_before = redis_cost::read(&mut self.redis).await?;
        let cpu = self.pids.sample(Instant::now());
        let started = Instant::now();
        let registry = self.registry.clone();
        let mut calls = futures::stream::iter(batches)
            .map(|events| {
                let mut client = registry.clone();
                async move { client.publish_batch(PublishBatchRequest { events }).await }
            })
            .buffer_unordered(self.args.publish_concurrency);
        let mut announced = 0u64;
        let mut errors = 0u64;
        let mut first_error = None;
        while let Some(answer) = calls.next().await {
            match answer {
                Ok(r) => announced += r.into_inner().results.iter().map(|r| u64::from(r.deliveries)).sum::<u64>(),
                Err(status) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{}: {}", status.code(), status.message()));
                }
            }
        }
        drop(calls);
        let published = started.elapsed();
        if let Some(e) = &first_error {
            eprintln!("{label}: {errors} PublishBatch calls failed, first: {e}");
        }
        if announced != expected {
            eprintln!("{label}: registry announced {announced} deliveries, expected {expected}");
        }
        let arrivals = self.wait(fleet.id, seqs.clone(), raw_before, expected, label).await;
        let cpu = self.pids.since(cpu);
        redis_cost::wait_settled(&http, &self.dispatch_admin_urls, settled_before, expected, Duration::from_secs(30))
            .await;
        let redis_after = redis_cost::read(&mut self.redis).await?;
        let unique: HashSet<(u32, u64)> = arrivals.iter().map(|a| (a.endpoint, a.seq)).collect();
        let last = arrivals.iter().map(|a| a.at_ns).max().map(|ns| self.sink.instant(ns)).unwrap_or(started);
        let elapsed = last.saturating_duration_since(started).as_secs_f64().max(1e-9);
        let run = Run {
            expected,
            announced,
            publish_errors: errors,
            received: arrivals.len() as u64,
            unique: unique.len() as u64,
            secs: elapsed,
            publish_secs: published.as_secs_f64(),
            cpu,
            redis: RedisCost::between(&redis_before, &redis_after, unique.len() as u64),
        };
        self.check(label, &run);
        Ok(run)
    }

    /// Waits until `expected` distinct (endpoint, seq) receipts of `seqs`
    /// arrived, or the timeout passed; answers what arrived.
    async fn wait(
        &self,
        fleet: u16,
        seqs: std::ops::Range<u64>,
        raw_before: u64,
        expected: u64,
        label: &str,
    ) -> Vec<Arrival> {
        let deadline = Instant::now() + Duration::from_secs(self.args.timeout_secs);
        let mut checked_at = u64::MAX;
        loop {
            let raw = self.sink.raw(fleet) - raw_before;
            if raw >= expected && raw != checked_at {
                checked_at = raw;
                let arrivals = self.sink.collect(fleet, seqs.clone());
                let unique: HashSet<(u32, u64)> = arrivals.iter().map(|a| (a.endpoint, a.seq)).collect();
                if unique.len() as u64 >= expected {
                    // Give late duplicates a moment to show up in the count.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return self.sink.collect(fleet, seqs);
                }
            }
            if Instant::now() > deadline {
                eprintln!("{label}: gave up after {}s with {raw} of {expected} receipts", self.args.timeout_secs);
                return self.sink.collect(fleet, seqs);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn check(&mut self, label: &str, run: &Run) {
        if run.unique < run.expected {
            self.lost.push(format!(
                "{label}: LOST {} of {} deliveries ({} received)",
                run.expected - run.unique,
                run.expected,
                run.unique
            ));
        }
        if run.received > run.unique {
            self.lost.push(format!("{label}: {} duplicate receipts (at-least-once)", run.received - run.unique));
        }
        if run.publish_errors > 0 {
            self.lost.push(format!("{label}: {} PublishBatch calls failed", run.publish_errors));
        }
        if run.announced != run.expected {
            self.lost
                .push(format!("{label}: Publish answered {} deliveries, expected {}", run.announced, run.expected));
        }
    }
}

struct Run {
    expected: u64,
    announced: u64,
    publish_errors: u64,
    received: u64,
    unique: u64,
    /// First publish to last receipt.
    secs: f64,
    publish_secs: f64,
    cpu: Cpu,
    redis: RedisCost,
}

impl Run {
    fn rate(&self) -> f64 {
        self.unique as f64 / self.secs
    }

    fn complete(&self) -> bool {
        self.unique >= self.expected
    }
}

// ---------------------------------------------------------------- wrk

async fn run_wrk(args: &Args, receiver: SocketAddr, sink: &Sink, dir: &Path) -> Result<(f64, String)> {
    let (headers, body) = sink.sample.get().cloned().unwrap_or_else(synthetic_delivery);
    let mut script = String::from("wrk.method = \"POST\"\n");
    let _ = writeln!(script, "wrk.body = [==[{}]==]", String::from_utf8_lossy(&body));
    for (name, value) in replayed_headers(&headers) {
        let _ = writeln!(script, "wrk.headers[\"{name}\"] = [==[{value}]==]");
    }
    let path = dir.join("post.lua");
    std::fs::write(&path, script)?;
    let before = sink.raw(WRK_FLEET as u16);
    let output = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", args.wrk_threads))
        .arg(format!("-c{}", args.wrk_connections))
        .arg(format!("-d{}s", args.wrk_secs))
        .arg("--latency")
        .arg("-s")
        .arg(&path)
        .arg(format!("http://{receiver}/wrk"))
        .output()
        .await
        .context("running wrk (install it: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| {
            anyhow!("no Requests/sec in wrk's output:\n{text}{}", String::from_utf8_lossy(&output.stderr))
        })?;
    let counted = sink.raw(WRK_FLEET as u16) - before;
    let errors = text.lines().filter(|l| l.contains("Non-2xx") || l.contains("Socket errors")).collect::<Vec<_>>();
    let mut note = format!("receiver counted {counted} requests");
    if !errors.is_empty() {
        let _ = write!(note, "; wrk: {}", errors.join("; "));
    }
    Ok((rps, note))
}

/// The captured headers a replay sends again: all but the framing, which
/// the replaying client sets itself.
fn replayed_headers(headers: &[(String, String)]) -> impl Iterator<Item = &(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding"))
}

/// A delivery shaped like Herald's `json` format, used when no real one was captured.
fn synthetic_delivery() -> Captured {
    let body = format!(
        r#"{{"id":"evt_01JBENCH000000000000000000","type":"bench.f1","timestamp":"2025-01-01T00:00:00Z","data":{{"target":"1","bseq":1,"pad":"{}"}}}}"#,
        "x".repeat(208)
    );
    let headers = [
        ("content-type", "application/json"),
        ("user-agent", "Herald/0.1.0"),
        ("webhook-id", "dlv_01JBENCH000000000000000000"),
        ("webhook-timestamp", "1735689600"),
        ("webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ];
    (headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), body.into_bytes())
}

// ---------------------------------------------------------------- report

struct Row {
    figure: String,
    value: String,
    ratio: String,
    target: String,
    command: String,
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", s.as_str()));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn ratio(value: f64, limit: Option<f64>) -> String {
    limit.filter(|l| *l > 0.0).map(|l| format!("{:.3}", value / l)).unwrap_or_else(|| "—".to_owned())
}

fn status(run: &Run) -> &'static str {
    if run.complete() { "" } else { " (INCOMPLETE)" }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn cpu_line(label: &str, run: &Run) -> String {
    let c = run.cpu;
    let per = |secs: f64| {
        if run.unique > 0 {
            format!("{secs:.2} ({:.0} µs)", secs * 1e6 / run.unique as f64)
        } else {
            format!("{secs:.2}")
        }
    };
    format!(
        "| {label} | {:.1} | {} | {} | {} | {} | {} | {:.2} ({:.0}% of the machine) |",
        c.wall,
        per(c.dispatch),
        per(c.registry),
        per(c.redis),
        per(c.gateway),
        per(c.bench),
        c.other,
        100.0 * c.other / (c.wall * nproc() as f64).max(1e-9)
    )
}

fn redis_line(label: &str, run: &Run, payload_bytes: usize) -> String {
    format!(
        "| {label} | {} | {:.0} B (events of ~{payload_bytes} B of data) |",
        run.redis.breakdown(),
        run.redis.bytes_per_delivery()
    )
}

/// The dispatchers' metrics whose name mentions actors, summed per name
/// over every dispatcher, and the live-actor gauge among them when there
/// is one.
async fn actor_metrics(http: &reqwest::Client, urls: &[String]) -> (String, Option<f64>) {
    let mut sums: Vec<(String, f64)> = Vec::new();
    for url in urls {
        let Ok(r) = http.get(format!("{url}/metrics")).send().await else {
            return ("metrics unavailable".to_owned(), None);
        };
        let text = r.text().await.unwrap_or_default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name_labels, value)) = line.rsplit_once(' ') else { continue };
            let name = name_labels.split('{').next().unwrap_or(name_labels);
            if !name.contains("actor") {
                continue;
            }
            let Ok(v) = value.parse::<f64>() else { continue };
            match sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => *total += v,
                None => sums.push((name.to_owned(), v)),
            }
        }
    }
    if sums.is_empty() {
        return ("no actor metric exported".to_owned(), None);
    }
    let live = sums.iter().find(|(n, _)| n.contains("live_actors")).map(|(_, v)| *v);
    (sums.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", "), live)
}

// ---------------------------------------------------------------- main

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(client_floor::CHILD_FLAG) {
        if let Err(e) = client_floor::child(&argv[2..]) {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let dir =
        TempDir { path: std::env::temp_dir().join(format!("herald-bench-{}", std::process::id())), keep: args.keep };
    std::fs::create_dir_all(&dir.path)?;
    let redis_dir = dir.path.join("redis");
    let (redis, dispatchers, mut setup) = if args.cluster {
        (RedisNodes::cluster(&redis_dir), cluster::CLUSTER_DISPATCHERS, cluster::CLUSTER_SETUP.to_owned())
    } else {
        (RedisNodes::single(&redis_dir), 1, cluster::SINGLE_SETUP.to_owned())
    };
    let prefix = args.service_setting("HERALD_REDIS_PREFIX").unwrap_or("herald").to_owned();
    let partitions = args.service_setting("HERALD_PARTITIONS").and_then(|p| p.parse().ok()).unwrap_or(16);

    let sink = Arc::new(Sink::new());
    let receiver = start_receiver(sink.clone()).await?;
    let mut services = start_services(redis.service_env(), dispatchers, &args, &dir.path).await?;
    let pids = Pids {
        registry: services.registry.pid(),
        dispatch: services.dispatchers.iter().map(Guarded::pid).collect(),
        gateway: services.gateway.as_ref().map_or(0, Guarded::pid),
        redis: redis.pids.clone(),
        bench: std::process::id(),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(256).build()?;
    let channel = tonic::transport::Endpoint::from_shared(services.registry_url.clone())?.connect().await?;
    let registry = RegistryClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
    let redis_conns = redis.connections().await?;
    if args.cluster {
        let started = Instant::now();
        let owned =
            cluster::wait_balanced(&http, &services.dispatch_admin_urls, partitions, Duration::from_secs(60)).await;
        let owned: Vec<String> = owned.iter().map(u64::to_string).collect();
        let _ = write!(
            setup,
            "; partitions owned per dispatcher when the scenarios began: {} of {partitions} (waited {:.1}s for a fair share)",
            owned.join(" + "),
            started.elapsed().as_secs_f64()
        );
    }
    let mut bench = Bench {
        args: args.clone(),
        admin: Admin {
            http: http.clone(),
            base: services.gateway_url.clone(),
            grpc: args.setup_grpc.then(|| registry.clone()),
        },
        registry,
        receiver,
        sink: sink.clone(),
        pids,
        dispatch_admin_urls: services.dispatch_admin_urls.clone(),
        redis: redis_conns,
        next_fleet: 0,
        next_seq: 1,
        lost: Vec::new(),
    };

    let outcome = scenarios(&mut bench, &args, &dir.path).await;
    let mut crashed = Vec::new();
    for service in services.all_mut() {
        if let Some(status) = service.exited() {
            crashed.push(format!("{} exited during the run ({status})", service.name));
        }
    }
    let logs = log_summary(&services.logs, &services.names());
    // Read while the services and Redis still run.
    let spread = if outcome.is_ok() {
        redis.spread(&prefix, partitions).await.unwrap_or_else(|e| Some(format!("not read: {e:#}\n")))
    } else {
        None
    };
    drop(services);
    drop(redis);
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            eprintln!("\nService logs (RUST_LOG=warn):\n{logs}");
            for line in bench.lost.iter().chain(crashed.iter()) {
                eprintln!("- {line}");
            }
            return Err(e);
        }
    };

    println!("\n## Machine\n\n{}", machine_info(&setup));
    println!("## Figures\n");
    println!("{report}");
    if let Some(spread) = spread {
        println!("## Partition streams per master\n\n{spread}");
    }
    println!("## Delivery accounting\n");
    if bench.lost.is_empty() && crashed.is_empty() {
        println!("Every expected delivery arrived (receipts deduplicated by endpoint and event).");
    }
    for line in bench.lost.iter().chain(crashed.iter()) {
        println!("- {line}");
    }
    let unparsed = sink.unparsed.load(Ordering::Relaxed);
    if unparsed > 0 {
        println!("- {unparsed} requests to unexpected paths");
    }
    println!("\n## Service logs (RUST_LOG=warn)\n\n{logs}");
    if args.keep {
        println!("Kept {}", dir.path.display());
    }
    Ok(())
}

/// Stops a `perf record` when dropped, so its data file is complete.
struct Perf(Option<Child>);

impl Perf {
    /// Records `pids` (every dispatcher) into `file`, if given.
    fn start(file: Option<&PathBuf>, pids: &[u32]) -> Perf {
        let Some(file) = file else { return Perf(None) };
        let pids = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let child = Command::new("perf")
            .args(["record", "--call-graph", "dwarf,16384", "-F", "1999", "-p", &pids, "-o"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                std::thread::sleep(Duration::from_millis(500));
                Perf(Some(c))
            }
            Err(e) => {
                eprintln!("perf record could not start: {e}");
                Perf(None)
            }
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

async fn scenarios(bench: &mut Bench, args: &Args, dir: &Path) -> Result<String> {
    let mut rows: Vec<Row> = Vec::new();
    let mut cpu_rows: Vec<String> = Vec::new();
    let mut redis_rows: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let routing = args.routing;
    let routing_flag = if routing == Routing::Types { " --routing types" } else { "" };
    let mut unicast: Option<(Run, Fleet)> = None;
    let mut fanout: Option<Run> = None;

    // 1. unicast
    if args.runs("unicast") || args.runs("latency") {
        let fleet = bench.fleet(args.unicast_endpoints, routing).await?;
        rows.push(Row {
            figure: format!(
                "set-up: {} endpoints + subscriptions over REST ({} in flight)",
                fleet.n, args.create_concurrency
            ),
            value: format!("{:.0} endpoints/s", fleet.n as f64 / fleet.setup_secs),
            ratio: "—".into(),
            target: "—".into(),
            command: "(part of every scenario)".into(),
        });
        if args.runs("unicast") {
            let perf = Perf::start(args.perf.as_ref(), &bench.pids.dispatch);
            let run =
                bench.publish_and_wait(&fleet, args.unicast_events, args.unicast_events as u64, "unicast").await?;
            drop(perf);
            cpu_rows.push(cpu_line("unicast", &run));
            redis_rows.push(redis_line("unicast", &run, args.payload_bytes));
            notes.push(format!(
                "unicast: registry accepted the {} events in {:.2}s ({} events/s)",
                args.unicast_events,
                run.publish_secs,
                thousands(args.unicast_events as f64 / run.publish_secs)
            ));
            unicast = Some((run, fleet));
        } else {
            // The latency scenario still wants warm actors on this fleet.
            unicast = Some((bench.publish_and_wait(&fleet, fleet.n, fleet.n as u64, "warm-up").await?, fleet));
        }
    }

    // 4. the physical limit, replaying a captured Herald delivery.
    let (limit, limit_note) = match run_wrk(args, bench.receiver, &bench.sink, dir).await {
        Ok((rps, note)) => (Some(rps), note),
        Err(e) => (None, format!("wrk failed: {e:#}")),
    };
    rows.insert(
        0,
        Row {
            figure: format!(
                "LIMIT: wrk -t{} -c{} -d{}s posting a captured Herald delivery to the same receiver",
                args.wrk_threads, args.wrk_connections, args.wrk_secs
            ),
            value: limit.map(|l| format!("{} req/s", thousands(l))).unwrap_or_else(|| "not measured".into()),
            ratio: if limit.is_some() { "1.000".into() } else { "—".into() },
            target: "—".into(),
            command: format!(
                "{} (wrk flags: --wrk-threads {} --wrk-connections {} --wrk-secs {})",
                args.command(""),
                args.wrk_threads,
                args.wrk_connections,
                args.wrk_secs
            ),
        },
    );
    notes.push(format!("limit: {limit_note}"));

    // 4b. the dispatcher's HTTP client alone, on the same receiver.
    if args.floor_requests > 0 {
        let sample = bench.sink.sample.get().cloned().unwrap_or_else(synthetic_delivery);
        let url = format!("http://{}/wrk", bench.receiver);
        let in_flight = args.floor_in_flight.unwrap_or(args.wrk_connections);
        match client_floor::measure(&sample, &url, args.floor_requests, in_flight, dir).await {
            Ok(floor) => {
                rows.insert(
                    1,
                    Row {
                        figure: format!(
                            "FLOOR: the dispatcher's HTTP client alone (reqwest, its settings and threads), {} requests, {} in flight",
                            floor.requests, in_flight
                        ),
                        value: format!(
                            "{} req/s, {:.0} µs CPU a request",
                            thousands(floor.rate()),
                            floor.cpu_us_per_request()
                        ),
                        ratio: ratio(floor.rate(), limit),
                        target: "—".into(),
                        command: format!(
                            "{} (--floor-requests {} --floor-in-flight {in_flight})",
                            args.command(""),
                            args.floor_requests
                        ),
                    },
                );
                notes.push(format!(
                    "client floor: {:.0} µs of CPU a request is what reqwest, hyper and the kernel take from the dispatcher for one delivery with nothing of Herald around it",
                    floor.cpu_us_per_request()
                ));
            }
            Err(e) => notes.push(format!("client floor not measured: {e:#}")),
        }
    }

    if let Some((run, fleet)) = unicast.as_ref().filter(|_| args.runs("unicast")) {
        rows.push(Row {
            figure: format!(
                "unicast: {} events over {} endpoints, PublishBatch of {}",
                run.expected, fleet.n, args.batch
            ),
            value: format!("{} deliveries/s{}", thousands(run.rate()), status(run)),
            ratio: ratio(run.rate(), limit),
            target: ">= 0.25 (stretch 0.5)".into(),
            command: args.command(&format!(
                " --only unicast --unicast-endpoints {} --unicast-events {}{routing_flag}",
                fleet.n, run.expected
            )),
        });
    }

    // 2. fan-out
    if args.runs("fanout") {
        let fleet = bench.fleet(args.fanout_endpoints, Routing::Broadcast).await?;
        let expected = (args.fanout_events * fleet.n) as u64;
        let run = bench.publish_and_wait(&fleet, args.fanout_events, expected, "fan-out").await?;
        cpu_rows.push(cpu_line("fan-out", &run));
        redis_rows.push(redis_line("fan-out", &run, args.payload_bytes));
        let vs_unicast = unicast
            .as_ref()
            .filter(|_| args.runs("unicast"))
            .map(|(u, _)| format!(", {:.2}× unicast", run.rate() / u.rate()))
            .unwrap_or_default();
        rows.push(Row {
            figure: format!("fan-out: {} events × {} endpoints", args.fanout_events, fleet.n),
            value: format!("{} deliveries/s{}{vs_unicast}", thousands(run.rate()), status(&run)),
            ratio: ratio(run.rate(), limit),
            target: ">= unicast".into(),
            command: args.command(&format!(
                " --only fanout --fanout-endpoints {} --fanout-events {}",
                fleet.n, args.fanout_events
            )),
        });
        fanout = Some(run);
    }
    let _ = fanout;

    // 3. latency at a light load, single Publish calls.
    if args.runs("latency")
        && let Some((_, fleet)) = unicast.as_ref()
    {
        let row = latency(bench, fleet, args).await?;
        rows.push(row);
    }

    // 6. cost growth: each endpoint count twice, first with every actor and
    // routing table cold (at 10,000 endpoints most endpoints get their first
    // event in that round), then again with them warm.
    if args.runs("growth") {
        let mut base: [Option<f64>; 2] = [None, None];
        let base_n = if args.growth.contains(&100) { 100 } else { args.growth[0] };
        for &n in &args.growth {
            let fleet = bench.fleet(n, routing).await?;
            for (round, (when, base)) in ["cold", "warm"].into_iter().zip(base.iter_mut()).enumerate() {
                let label = format!("growth n={n} {when}");
                let run = bench.publish_and_wait(&fleet, args.growth_events, args.growth_events as u64, &label).await?;
                cpu_rows.push(cpu_line(&label, &run));
                redis_rows.push(redis_line(&label, &run, args.payload_bytes));
                if n == base_n {
                    *base = Some(run.rate());
                }
                let vs = base.map(|b| format!(", {:.2}× the n={base_n} figure", run.rate() / b)).unwrap_or_default();
                rows.push(Row {
                    figure: format!(
                        "cost growth: unicast, {} events over {n} endpoints, {}",
                        args.growth_events,
                        if round == 0 { "actors and routing cold" } else { "again, warm" }
                    ),
                    value: format!(
                        "{} deliveries/s{}{}",
                        thousands(run.rate()),
                        status(&run),
                        if n >= base_n { vs } else { String::new() }
                    ),
                    ratio: ratio(run.rate(), limit),
                    target: "flat from 100 to 10,000".into(),
                    command: args.command(&format!(
                        " --only growth --growth {} --growth-events {}{routing_flag}",
                        args.growth.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
                        args.growth_events
                    )),
                });
            }
        }
    }

    // 5. memory per live actor; last, because it ends by watching the actors go idle.
    if args.runs("memory") {
        let (row, note) = memory(bench, args).await?;
        rows.push(row);
        notes.push(note);
    }

    let mut out = String::from("| figure | value | ratio to limit | target | command |\n|---|---|---|---|---|\n");
    for r in &rows {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", r.figure, r.value, r.ratio, r.target, r.command);
    }
    out.push_str("\nCPU seconds each process used during each scenario (first publish to last receipt), in brackets CPU µs per delivery. \
The last column is every other process on the machine: more than a few percent there skews the figures.\n\n");
    if args.cluster {
        out.push_str(
            "With `--cluster`, dispatch is both dispatchers together and redis the three masters together.\n\n",
        );
    }
    out.push_str("| scenario | wall s | dispatch | registry | redis | gateway | bench (publisher + receiver) | rest of the machine |\n|---|---|---|---|---|---|---|---|\n");
    for line in cpu_rows {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(
        "\nWhat Redis spent on each scenario (`INFO commandstats` and `used_memory`, read before the first publish \
and after the dispatcher counted every settlement), per delivery: commands by name, and memory still held for the \
retention (delivery records, indexes, stored events).\n\n",
    );
    if args.cluster {
        out.push_str(
            "With `--cluster`, both are summed over the three masters, and settlements over both dispatchers.\n\n",
        );
    }
    out.push_str("| scenario | Redis commands per delivery | Redis memory per retained delivery |\n|---|---|---|\n");
    for line in redis_rows {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    Ok(out)
}

async fn latency(bench: &mut Bench, fleet: &Fleet, args: &Args) -> Result<Row> {
    let total = (args.latency_rate * args.latency_secs) as usize;
    let seqs = bench.take_seqs(total);
    let raw_before = bench.sink.raw(fleet.id);
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let errors = Arc::new(AtomicU64::new(0));
    let announced = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / args.latency_rate));
    let mut tasks = Vec::with_capacity(total);
    let cpu = bench.pids.sample(Instant::now());
    for (k, seq) in seqs.clone().enumerate() {
        tick.tick().await;
        let request = bench.event(fleet, k % fleet.n.max(1), seq);
        let mut client = bench.registry.clone();
        let (sent, errors, announced) = (sent.clone(), errors.clone(), announced.clone());
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            sent.lock().unwrap().insert(seq, at);
            match client.publish(request).await {
                Ok(r) => {
                    announced.fetch_add(u64::from(r.into_inner().deliveries), Ordering::Relaxed);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let arrivals = bench.wait(fleet.id, seqs.clone(), raw_before, total as u64, "latency").await;
    let cpu = bench.pids.since(cpu);
    let sent = sent.lock().unwrap().clone();
    let mut first: HashMap<u64, u64> = HashMap::new();
    for a in &arrivals {
        first.entry(a.seq).and_modify(|at| *at = (*at).min(a.at_ns)).or_insert(a.at_ns);
    }
    let mut millis: Vec<f64> = first
        .iter()
        .filter_map(|(seq, at)| {
            let start = sent.get(seq)?;
            Some(bench.sink.instant(*at).saturating_duration_since(*start).as_secs_f64() * 1000.0)
        })
        .collect();
    millis.sort_by(f64::total_cmp);
    let run = Run {
        expected: total as u64,
        announced: announced.load(Ordering::Relaxed),
        publish_errors: errors.load(Ordering::Relaxed),
        received: arrivals.len() as u64,
        unique: first.len() as u64,
        secs: cpu.wall,
        publish_secs: cpu.wall,
        cpu,
        redis: RedisCost::default(),
    };
    bench.check("latency", &run);
    Ok(Row {
        figure: format!(
            "latency publish → receipt: {} events/s for {}s, single Publish calls ({} endpoints)",
            args.latency_rate, args.latency_secs, fleet.n
        ),
        value: format!(
            "p50 {:.2} ms · p99 {:.2} ms · max {:.2} ms ({} samples){}",
            percentile(&millis, 50.0),
            percentile(&millis, 99.0),
            millis.last().copied().unwrap_or(f64::NAN),
            millis.len(),
            status(&run)
        ),
        ratio: "—".into(),
        target: "p99 <= 10 ms".into(),
        command: args.command(&format!(
            " --only latency --latency-rate {} --latency-secs {}",
            args.latency_rate, args.latency_secs
        )),
    })
}

async fn memory(bench: &mut Bench, args: &Args) -> Result<(Row, String)> {
    let n = args.memory_endpoints;
    // One event type per endpoint: with a filter per subscription the
    // registry would match every event against all N filters, and this
    // scenario is about the dispatcher.
    let fleet = bench.fleet(n, Routing::Types).await?;
    let pids = bench.pids.clone();
    let http = bench.admin.http.clone();
    // Let whatever the creation stirred up in the dispatcher settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = pids.dispatch_rss_kib();
    let (actors_before, _) = actor_metrics(&http, &bench.dispatch_admin_urls).await;
    let run = bench.publish_and_wait(&fleet, n, n as u64, "memory").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = pids.dispatch_rss_kib();
    let (actors_live, _) = actor_metrics(&http, &bench.dispatch_admin_urls).await;
    let per_actor = (live.saturating_sub(before) * 1024) as f64 / n.max(1) as f64;

    // Watch the dispatcher while the actors sit idle. An idle timeout shows
    // as the live-actor gauge falling to zero; the watch ends there (or after
    // --idle-wait-secs). RSS may not fall: the allocator can keep freed pages.
    let watch_started = Instant::now();
    let mut idle = live;
    let mut samples = Vec::new();
    let mut stopped_after = None;
    let mut last_gauge = None;
    while watch_started.elapsed() < Duration::from_secs(args.idle_wait_secs) {
        tokio::time::sleep(Duration::from_secs(10).min(Duration::from_secs(args.idle_wait_secs.max(1)))).await;
        idle = pids.dispatch_rss_kib();
        let (_, gauge) = actor_metrics(&http, &bench.dispatch_admin_urls).await;
        let secs = watch_started.elapsed().as_secs();
        // Only the changes are worth printing.
        if last_gauge != Some(gauge) {
            samples.push(format!(
                "{secs}s: {} MiB{}",
                idle / 1024,
                gauge.map(|g| format!(", {g} live actors")).unwrap_or_default()
            ));
            last_gauge = Some(gauge);
        }
        // Every fleet is quiet by now, and the older ones go idle first, so
        // the memory fleet's actors have stopped only when none is left.
        if gauge.is_some_and(|live| live <= 0.0) {
            stopped_after = Some(secs);
            break;
        }
    }
    let (actors_idle, _) = actor_metrics(&http, &bench.dispatch_admin_urls).await;
    let watched = watch_started.elapsed().as_secs();
    let idle_note = match stopped_after {
        Some(secs) => format!("the dispatcher stopped the idle actors within {secs}s"),
        None => format!("the idle actors were still live after {watched}s"),
    };
    // With `--cluster` the figures are both dispatchers' together.
    let summed = if pids.dispatch.len() > 1 { " (both dispatchers summed)" } else { "" };
    let note = format!(
        "memory: dispatcher RSS{summed} {} KiB before, {} KiB with {n} live actors, {} KiB after {watched}s idle; \
         {idle_note}; actor metrics before: {actors_before}; live: {actors_live}; after idle: {actors_idle}; \
         while idle: {}",
        thousands(before as f64),
        thousands(live as f64),
        thousands(idle as f64),
        samples.join("; ")
    );
    let row = Row {
        figure: format!("dispatcher memory{summed}: {n} endpoints with one delivery each (VmRSS)"),
        value: format!(
            "{} B per live actor ({} → {} MiB; {} MiB after {watched}s idle: {idle_note}){}",
            thousands(per_actor),
            before / 1024,
            live / 1024,
            idle / 1024,
            status(&run)
        ),
        ratio: "—".into(),
        target: "<= 2 KiB per idle actor".into(),
        command: args.command(&format!(" --only memory --memory-endpoints {n}")),
    };
    Ok((row, note))
}
