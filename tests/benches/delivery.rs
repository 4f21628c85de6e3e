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

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "delivery/redis_cost.rs"]
mod redis_cost;

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
use futures::StreamExt;
use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{
    CreateEndpointRequest, CreateSubscriptionRequest, CreateTenantRequest, EndpointSpec, EventType,
    PublishBatchRequest, PublishRequest,
};
use redis_cost::RedisCost;
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
    routing: Routing,
    payload_bytes: usize,
    create_concurrency: usize,
    timeout_secs: u64,
    perf: Option<PathBuf>,
    setup_grpc: bool,
    service_env: Vec<(String, String)>,
    keep: bool,
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
            routing: Routing::Filter,
            payload_bytes: 256,
            create_concurrency: 32,
            timeout_secs: 180,
            perf: None,
            setup_grpc: false,
            service_env: Vec::new(),
            keep: false,
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
  --routing filter|types      unicast and cost-growth routing: one event type with a `data.target`
                              filter per subscription, or one event type per endpoint (filter);
                              the memory scenario always uses one event type per endpoint
  --payload-bytes N           approximate size of each event's `data` (256)
  --create-concurrency N      calls in flight while creating endpoints (32)
  --setup rest|grpc           create tenants, endpoints and subscriptions over the admin REST API
                              or straight over gRPC, without starting the gateway (rest)
  --timeout-secs N            longest wait for the deliveries of one scenario (180)
  --perf FILE                 record the dispatcher with `perf record --call-graph dwarf` into FILE
                              during the unicast scenario (`perf report -i FILE` reads it)
  --service-env KEY=VALUE     extra environment for the three services (repeatable)
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
}

// ---------------------------------------------------------------- processes

/// A child process killed when dropped (also on panic), plus a shell
/// watchdog that kills it should this benchmark itself be killed.
struct Guarded {
    name: &'static str,
    child: Child,
    watchdog: Option<Child>,
}

impl Guarded {
    fn new(name: &'static str, child: Child) -> Guarded {
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {it} 2>/dev/null",
            me = std::process::id(),
            it = child.id()
        );
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Guarded { name, child, watchdog }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Removes the temporary directory unless `--keep`.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

struct Services {
    registry: Guarded,
    dispatch: Guarded,
    /// Not started with `--setup grpc`: nothing on the delivery path goes through it.
    gateway: Option<Guarded>,
    gateway_url: String,
    registry_url: String,
    dispatch_admin_url: String,
    logs: PathBuf,
}

impl Services {
    fn all_mut(&mut self) -> Vec<&mut Guarded> {
        let mut all = vec![&mut self.registry, &mut self.dispatch];
        all.extend(self.gateway.as_mut());
        all
    }
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], herald_tests::free_port()))
}

fn spawn_service(name: &'static str, env: &[(String, String)], logs: &Path) -> Result<Guarded> {
    let binary = herald_tests::binary(name);
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let child = Command::new(&binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Guarded::new(name, child))
}

async fn start_services(redis_url: &str, args: &Args, dir: &Path) -> Result<Services> {
    let (registry, registry_admin, dispatch, dispatch_admin, gateway) = (addr(), addr(), addr(), addr(), addr());
    let mut env: Vec<(String, String)> = vec![
        ("HERALD_REDIS_URL".into(), redis_url.into()),
        ("HERALD_SECRET_KEY".into(), herald_tests::SECRET_KEY.into()),
        ("HERALD_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ("HERALD_ALLOW_PRIVATE_NETWORKS".into(), "true".into()),
        ("HERALD_ALLOW_HTTP".into(), "true".into()),
        ("HERALD_REGISTRY_LISTEN".into(), registry.to_string()),
        ("HERALD_REGISTRY_ADMIN_LISTEN".into(), registry_admin.to_string()),
        ("HERALD_DISPATCH_LISTEN".into(), dispatch.to_string()),
        ("HERALD_DISPATCH_ADMIN_LISTEN".into(), dispatch_admin.to_string()),
        ("HERALD_GATEWAY_LISTEN".into(), gateway.to_string()),
        ("HERALD_REGISTRY_URL".into(), format!("http://{registry}")),
        ("HERALD_DISPATCH_URL".into(), format!("http://{dispatch}")),
        ("RUST_LOG".into(), "warn".into()),
    ];
    env.extend(args.service_env.iter().cloned());
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut services = Services {
        registry: spawn_service("herald-registry", &env, &logs)?,
        dispatch: spawn_service("herald-dispatch", &env, &logs)?,
        gateway: if args.setup_grpc { None } else { Some(spawn_service("herald-gateway", &env, &logs)?) },
        gateway_url: format!("http://{gateway}"),
        registry_url: format!("http://{registry}"),
        dispatch_admin_url: format!("http://{dispatch_admin}"),
        logs: logs.clone(),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = vec![format!("http://{registry_admin}/readyz"), format!("http://{dispatch_admin}/readyz")];
    if services.gateway.is_some() {
        ready.push(format!("http://{gateway}/readyz"));
    }
    for url in ready {
        loop {
            for service in services.all_mut() {
                if let Some(status) = service.exited() {
                    bail!(
                        "{} exited during start-up ({status}); see its log:\n{}",
                        service.name,
                        tail_log(&logs, service.name)
                    );
                }
            }
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if Instant::now() > deadline => bail!("{url} never became ready"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(services)
}

fn tail_log(logs: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Warnings and errors the services logged, counted per service.
fn log_summary(logs: &Path) -> String {
    let mut out = String::new();
    for name in ["herald-registry", "herald-dispatch", "herald-gateway"] {
        let text = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
        let mut warn = 0usize;
        let mut error = 0usize;
        let mut samples: Vec<String> = Vec::new();
        for line in text.lines() {
            let upper = line.to_ascii_uppercase();
            let is_error =
                upper.contains("\"LEVEL\":\"ERROR\"") || upper.contains(" ERROR ") || upper.contains("PANICKED");
            let is_warn = upper.contains("\"LEVEL\":\"WARN\"") || upper.contains(" WARN ");
            if is_error {
                error += 1;
            } else if is_warn {
                warn += 1;
            } else {
                continue;
            }
            let sample: String = line.chars().take(300).collect();
            if samples.len() < 3 && !samples.contains(&sample) {
                samples.push(sample);
            }
        }
        let _ = writeln!(out, "- {name}: {error} error and {warn} warning lines");
        for s in samples {
            let _ = writeln!(out, "    {s}");
        }
    }
    out
}

// ---------------------------------------------------------------- /proc

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

static CLK_TCK: OnceLock<f64> = OnceLock::new();

fn clk_tck() -> f64 {
    *CLK_TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

#[derive(Clone, Copy)]
struct Pids {
    registry: u32,
    dispatch: u32,
    gateway: u32,
    redis: Option<u32>,
    bench: u32,
}

/// CPU seconds every process on the machine has used so far (`/proc/stat`).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let ticks: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    busy / clk_tck()
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    /// Everything else on the machine: anything but noise here skews the figures.
    other: f64,
    registry: f64,
    dispatch: f64,
    gateway: f64,
    redis: f64,
    bench: f64,
    wall: f64,
}

impl Pids {
    fn sample(&self, at: Instant) -> (Instant, Cpu) {
        let c = |pid: u32| cpu_seconds(pid).unwrap_or(0.0);
        (
            at,
            Cpu {
                registry: c(self.registry),
                dispatch: c(self.dispatch),
                gateway: c(self.gateway),
                redis: self.redis.map(c).unwrap_or(0.0),
                bench: c(self.bench),
                other: machine_busy_seconds(),
                wall: 0.0,
            },
        )
    }

    fn since(&self, (at, before): (Instant, Cpu)) -> Cpu {
        let (now, after) = self.sample(Instant::now());
        Cpu {
            registry: after.registry - before.registry,
            dispatch: after.dispatch - before.dispatch,
            gateway: after.gateway - before.gateway,
            redis: after.redis - before.redis,
            bench: after.bench - before.bench,
            other: {
                let ours = after.registry + after.dispatch + after.gateway + after.redis + after.bench
                    - (before.registry + before.dispatch + before.gateway + before.redis + before.bench);
                (after.other - before.other - ours).max(0.0)
            },
            wall: (now - at).as_secs_f64(),
        }
    }
}

fn nproc() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn machine_info() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let nproc = nproc();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                String::from_utf8_lossy(&text).lines().next().unwrap_or("").to_owned()
            })
            .unwrap_or_else(|| "missing".to_owned())
    };
    format!(
        "- CPU: {model}, nproc {nproc}\n- memory: {:.1} GiB\n- kernel: {}\n- {}\n- {}\n",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        version("redis-server", "--version"),
        version("wrk", "--version"),
    )
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
    dispatch_admin_url: String,
    /// Reads Redis's own counters around each scenario.
    redis: redis::aio::MultiplexedConnection,
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
        let settled_before = redis_cost::settled_attempts(&http, &self.dispatch_admin_url).await;
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
        redis_cost::wait_settled(&http, &self.dispatch_admin_url, settled_before, expected, Duration::from_secs(30))
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
    for (name, value) in headers {
        if matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            continue;
        }
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

/// The dispatcher's metrics whose name mentions actors, summed per name,
/// and the live-actor gauge among them when there is one.
async fn actor_metrics(http: &reqwest::Client, url: &str) -> (String, Option<f64>) {
    let Ok(r) = http.get(format!("{url}/metrics")).send().await else {
        return ("metrics unavailable".to_owned(), None);
    };
    let text = r.text().await.unwrap_or_default();
    let mut sums: Vec<(String, f64)> = Vec::new();
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
    if sums.is_empty() {
        return ("no actor metric exported".to_owned(), None);
    }
    let live = sums.iter().find(|(n, _)| n.contains("live_actors")).map(|(_, v)| *v);
    (sums.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", "), live)
}

// ---------------------------------------------------------------- main

fn main() {
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
    let redis_port = herald_tests::free_port();
    let redis_dir = dir.path.join("redis");
    let redis_child = herald_tests::spawn_redis(redis_port, &redis_dir, &["--appendfsync", "everysec"]);
    let redis = Guarded::new("redis-server", redis_child);
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    herald_tests::wait_for_redis(&redis_url, Duration::from_secs(10));
    let redis_pid = redis_server_pid(&redis_url);

    let sink = Arc::new(Sink::new());
    let receiver = start_receiver(sink.clone()).await?;
    let mut services = start_services(&redis_url, &args, &dir.path).await?;
    let pids = Pids {
        registry: services.registry.pid(),
        dispatch: services.dispatch.pid(),
        gateway: services.gateway.as_ref().map_or(0, Guarded::pid),
        redis: redis_pid,
        bench: std::process::id(),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(256).build()?;
    let channel = tonic::transport::Endpoint::from_shared(services.registry_url.clone())?.connect().await?;
    let registry = RegistryClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
    let redis_conn = redis::Client::open(redis_url.as_str())?.get_multiplexed_async_connection().await?;
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
        dispatch_admin_url: services.dispatch_admin_url.clone(),
        redis: redis_conn,
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
    let logs = log_summary(&services.logs);
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

    println!("\n## Machine\n\n{}", machine_info());
    println!("## Figures\n");
    println!("{report}");
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

fn redis_server_pid(url: &str) -> Option<u32> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_connection().ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
    info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|v| v.trim().parse().ok())
}

/// Stops a `perf record` when dropped, so its data file is complete.
struct Perf(Option<Child>);

impl Perf {
    fn start(file: Option<&PathBuf>, pid: u32) -> Perf {
        let Some(file) = file else { return Perf(None) };
        let child = Command::new("perf")
            .args(["record", "--call-graph", "dwarf,16384", "-F", "499", "-p", &pid.to_string(), "-o"])
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
            let perf = Perf::start(args.perf.as_ref(), bench.pids.dispatch);
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
                "`./deploy/bench.sh` (wrk flags: --wrk-threads {} --wrk-connections {} --wrk-secs {})",
                args.wrk_threads, args.wrk_connections, args.wrk_secs
            ),
        },
    );
    notes.push(format!("limit: {limit_note}"));

    if let Some((run, fleet)) = unicast.as_ref().filter(|_| args.runs("unicast")) {
        rows.push(Row {
            figure: format!(
                "unicast: {} events over {} endpoints, PublishBatch of {}",
                run.expected, fleet.n, args.batch
            ),
            value: format!("{} deliveries/s{}", thousands(run.rate()), status(run)),
            ratio: ratio(run.rate(), limit),
            target: ">= 0.25 (stretch 0.5)".into(),
            command: format!(
                "`./deploy/bench.sh --only unicast --unicast-endpoints {} --unicast-events {}{routing_flag}`",
                fleet.n, run.expected
            ),
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
            command: format!(
                "`./deploy/bench.sh --only fanout --fanout-endpoints {} --fanout-events {}`",
                fleet.n, args.fanout_events
            ),
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

    // 6. cost growth.
    if args.runs("growth") {
        let mut base: Option<f64> = None;
        for &n in &args.growth {
            let fleet = bench.fleet(n, routing).await?;
            let label = format!("growth n={n}");
            let run = bench.publish_and_wait(&fleet, args.growth_events, args.growth_events as u64, &label).await?;
            cpu_rows.push(cpu_line(&label, &run));
            redis_rows.push(redis_line(&label, &run, args.payload_bytes));
            if n == 100 || base.is_none() {
                base = Some(run.rate());
            }
            let vs = base
                .map(|b| {
                    format!(
                        ", {:.2}× the n={} figure",
                        run.rate() / b,
                        if args.growth.contains(&100) { 100 } else { args.growth[0] }
                    )
                })
                .unwrap_or_default();
            rows.push(Row {
                figure: format!("cost growth: unicast, {} events over {n} endpoints", args.growth_events),
                value: format!(
                    "{} deliveries/s{}{}",
                    thousands(run.rate()),
                    status(&run),
                    if n >= 100 { vs } else { String::new() }
                ),
                ratio: ratio(run.rate(), limit),
                target: "flat from 100 to 10,000".into(),
                command: format!(
                    "`./deploy/bench.sh --only growth --growth {} --growth-events {}{routing_flag}`",
                    args.growth.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
                    args.growth_events
                ),
            });
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
        command: format!(
            "`./deploy/bench.sh --only latency --latency-rate {} --latency-secs {}`",
            args.latency_rate, args.latency_secs
        ),
    })
}

async fn memory(bench: &mut Bench, args: &Args) -> Result<(Row, String)> {
    let n = args.memory_endpoints;
    // One event type per endpoint: with a filter per subscription the
    // registry would match every event against all N filters, and this
    // scenario is about the dispatcher.
    let fleet = bench.fleet(n, Routing::Types).await?;
    let pid = bench.pids.dispatch;
    let http = bench.admin.http.clone();
    // Let whatever the creation stirred up in the dispatcher settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = vm_rss_kib(pid).unwrap_or(0);
    let (actors_before, _) = actor_metrics(&http, &bench.dispatch_admin_url).await;
    let run = bench.publish_and_wait(&fleet, n, n as u64, "memory").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = vm_rss_kib(pid).unwrap_or(0);
    let (actors_live, _) = actor_metrics(&http, &bench.dispatch_admin_url).await;
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
        idle = vm_rss_kib(pid).unwrap_or(0);
        let (_, gauge) = actor_metrics(&http, &bench.dispatch_admin_url).await;
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
    let (actors_idle, _) = actor_metrics(&http, &bench.dispatch_admin_url).await;
    let watched = watch_started.elapsed().as_secs();
    let idle_note = match stopped_after {
        Some(secs) => format!("the dispatcher stopped the idle actors within {secs}s"),
        None => format!("the idle actors were still live after {watched}s"),
    };
    let note = format!(
        "memory: dispatcher RSS {} KiB before, {} KiB with {n} live actors, {} KiB after {watched}s idle; \
         {idle_note}; actor metrics before: {actors_before}; live: {actors_live}; after idle: {actors_idle}; \
         while idle: {}",
        thousands(before as f64),
        thousands(live as f64),
        thousands(idle as f64),
        samples.join("; ")
    );
    let row = Row {
        figure: format!("dispatcher memory: {n} endpoints with one delivery each (VmRSS)"),
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
        command: format!("`./deploy/bench.sh --only memory --memory-endpoints {n}`"),
    };
    Ok((row, note))
}
