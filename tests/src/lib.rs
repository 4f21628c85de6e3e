//! Test harness for Herald's black-box tests.
//!
//! Everything here is real: a `redis-server` (AOF on) started once per test
//! process on a free loopback port in a temporary directory, the three
//! services started in-process on port 0 with a per-test Redis key prefix,
//! HTTP receivers that record what they are sent, and an OAuth 2.0 token
//! endpoint served over HTTP. Tests only ever talk to loopback addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod own_redis;
mod token_server;

pub use token_server::TokenServer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald_common::config::{Env, HeraldConfig};
use herald_common::keys::Keys;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bearer token of the admin in every test stack.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// `HERALD_SECRET_KEY` of every test stack (32 bytes of 0x2a, base64).
pub const SECRET_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

// ---------------------------------------------------------------- redis

struct TestRedis {
    url: String,
    _child: Child,
    _dir: PathBuf,
}

static REDIS: OnceLock<TestRedis> = OnceLock::new();

fn redis_server_binary() -> String {
    if let Ok(path) = std::env::var("HERALD_REDIS_SERVER") {
        return path;
    }
    for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    "redis-server".to_owned()
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `redis-server` with a watchdog that stops it when this test process
/// is gone, so no server outlives the run.
pub fn spawn_redis(port: u16, dir: &std::path::Path, extra: &[&str]) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
        "--appendonly".to_owned(),
        "yes".to_owned(),
        "--save".to_owned(),
        String::new(),
        "--protected-mode".to_owned(),
        "no".to_owned(),
        "--loglevel".to_owned(),
        "warning".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let script = format!(
        "\"$0\" \"$@\" & r=$!; (while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 $r 2>/dev/null) & wait $r",
        pid = std::process::id()
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(redis_server_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server must be installed (the test command installs it)")
}

/// Waits until a Redis at `url` answers PING.
pub fn wait_for_redis(url: &str, timeout: Duration) {
    let client = redis::Client::open(url).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut conn) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut conn).is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "redis at {url} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// URL of this test process's Redis, started on first use.
pub fn redis_url() -> String {
    REDIS
        .get_or_init(|| {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("herald-test-redis-{}-{port}", std::process::id()));
            let child = spawn_redis(port, &dir, &[]);
            let url = format!("redis://127.0.0.1:{port}");
            wait_for_redis(&url, Duration::from_secs(10));
            TestRedis { url, _child: child, _dir: dir }
        })
        .url
        .clone()
}

struct TestCluster {
    urls: Vec<String>,
    _children: Vec<Child>,
    _dir: PathBuf,
}

static CLUSTER: OnceLock<TestCluster> = OnceLock::new();

/// The slots each node of the test cluster serves.
const CLUSTER_SLOTS: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

/// Seed URLs (a comma list, as `HERALD_REDIS_CLUSTER_URLS` takes them) of
/// this test process's Redis Cluster: three masters on loopback, no
/// replicas, started on first use.
pub fn redis_cluster_urls() -> String {
    CLUSTER.get_or_init(start_cluster).urls.join(",")
}

/// Each node of the test cluster: its URL and the slots it serves.
pub fn redis_cluster_nodes() -> Vec<(String, (u16, u16))> {
    CLUSTER.get_or_init(start_cluster).urls.iter().cloned().zip(CLUSTER_SLOTS).collect()
}

/// A Redis Cluster of its own for one test (three masters, as
/// [`redis_cluster_urls`]), for tests that change how its nodes behave.
/// Its servers stop with the test process.
pub fn private_redis_cluster() -> Vec<(String, (u16, u16))> {
    let cluster = start_cluster();
    let nodes = cluster.urls.iter().cloned().zip(CLUSTER_SLOTS).collect();
    // Kept running for the rest of the process, like the shared one.
    std::mem::forget(cluster);
    nodes
}

fn start_cluster() -> TestCluster {
    let dir = std::env::temp_dir().join(format!("herald-test-cluster-{}-{}", std::process::id(), free_port()));
    let cluster = spawn_redis_cluster(&dir, &[]);
    TestCluster { urls: cluster.nodes.into_iter().map(|(url, _)| url).collect(), _children: cluster.servers, _dir: dir }
}

/// A Redis Cluster's masters, as [`spawn_redis_cluster`] started them.
pub struct ClusterServers {
    /// Each node's URL and the slots it serves.
    pub nodes: Vec<(String, (u16, u16))>,
    /// The node processes, in the order of `nodes`.
    pub servers: Vec<Child>,
}

/// Starts a Redis Cluster of three masters on loopback (no replicas), each
/// node's data in a directory under `dir` and `extra` passed to every
/// `redis-server`, and waits until every node sees the cluster formed.
/// Each node runs under the watchdog of [`spawn_redis`].
pub fn spawn_redis_cluster(dir: &std::path::Path, extra: &[&str]) -> ClusterServers {
    let mut children = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..CLUSTER_SLOTS.len() {
        let (port, bus) = (free_port(), free_port());
        let bus_arg = bus.to_string();
        let mut args = vec!["--cluster-enabled", "yes", "--cluster-port", &bus_arg, "--cluster-node-timeout", "2000"];
        args.extend_from_slice(extra);
        children.push(spawn_redis(port, &dir.join(format!("node{i}")), &args));
        let url = format!("redis://127.0.0.1:{port}");
        wait_for_redis(&url, Duration::from_secs(10));
        nodes.push((url, port, bus));
    }
    let connect = |url: &str| redis::Client::open(url).and_then(|c| c.get_connection()).unwrap();
    for ((url, _, _), (first, last)) in nodes.iter().zip(CLUSTER_SLOTS) {
        redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(first).arg(last).query::<()>(&mut connect(url)).unwrap();
    }
    let mut first = connect(&nodes[0].0);
    for (_, port, bus) in &nodes[1..] {
        redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(port).arg(bus).query::<()>(&mut first).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (url, _, _) in &nodes {
        let mut conn = connect(url);
        loop {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
            if info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{}", nodes.len())) {
                break;
            }
            assert!(Instant::now() < deadline, "the test cluster did not form: {info}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    ClusterServers { nodes: nodes.into_iter().map(|(url, _, _)| url).zip(CLUSTER_SLOTS).collect(), servers: children }
}

/// Every key matching `pattern` (a `SCAN MATCH` glob), on the node `conn`
/// talks to.
pub async fn scan_keys(conn: &mut impl redis::aio::ConnectionLike, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            return keys;
        }
    }
}

/// A publish of `{"n": id}` as event `id` of `event_type` for `tenant`.
pub fn publish_request(tenant: &str, id: &str, event_type: &str) -> herald_proto::v1::PublishRequest {
    herald_proto::v1::PublishRequest {
        tenant: tenant.into(),
        id: id.into(),
        r#type: event_type.into(),
        data: serde_json::json!({"n": id}).to_string().into_bytes(),
        ..Default::default()
    }
}

static PREFIX_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A Redis key prefix no other test in this run uses.
pub fn unique_prefix() -> String {
    format!("t{}-{}", std::process::id(), PREFIX_COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Installs logging and tracing once for the whole test process, so trace
/// context (and the webhook `traceparent`) exists as it does in production.
pub fn init_telemetry() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let env =
            Env::from_pairs([("RUST_LOG", std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()))]);
        if let Ok(guard) = herald_common::telemetry::init("herald-tests", &env) {
            std::mem::forget(guard);
        }
    });
}

// ---------------------------------------------------------------- stack

/// Which services a [`Stack`] runs.
#[derive(Clone, Copy, Debug)]
pub struct Services {
    pub registry: bool,
    pub dispatch: bool,
    pub gateway: bool,
}

impl Services {
    pub const ALL: Services = Services { registry: true, dispatch: true, gateway: true };
    pub const REGISTRY: Services = Services { registry: true, dispatch: false, gateway: false };
    pub const REGISTRY_AND_GATEWAY: Services = Services { registry: true, dispatch: false, gateway: true };
}

/// The environment every test stack starts from.
pub fn base_env(prefix: &str) -> Env {
    Env::from_pairs([
        ("HERALD_REDIS_URL", redis_url()),
        ("HERALD_REDIS_PREFIX", prefix.to_owned()),
        ("HERALD_SECRET_KEY", SECRET_KEY.to_owned()),
        ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("HERALD_ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
        ("HERALD_ALLOW_HTTP", "true".to_owned()),
        ("HERALD_PARTITIONS", "4".to_owned()),
        ("HERALD_DELIVERY_TIMEOUT_MS", "2000".to_owned()),
        ("HERALD_RETRY_SCHEDULE", "200ms,400ms,800ms".to_owned()),
        ("HERALD_WEBHOOK_ORIGIN", WEBHOOK_ORIGIN.to_owned()),
    ])
}

/// `WebHook-Request-Origin` of every test stack.
pub const WEBHOOK_ORIGIN: &str = "webhooks.herald.test";

/// Registry, dispatch and gateway running in this process.
pub struct Stack {
    pub prefix: String,
    pub config: HeraldConfig,
    pub keys: Keys,
    pub http: reqwest::Client,
    pub gateway_url: String,
    pub registry_url: String,
    pub dispatch_url: String,
    pub registry_admin_url: String,
    pub dispatch_admin_url: String,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(customise: impl FnOnce(&mut Env)) -> Stack {
        Self::start_services_with(Services::ALL, customise).await
    }

    pub async fn start_services(services: Services) -> Stack {
        Self::start_services_with(services, |_| {}).await
    }

    pub async fn start_services_with(services: Services, customise: impl FnOnce(&mut Env)) -> Stack {
        init_telemetry();
        let prefix = unique_prefix();
        let (registry_grpc, registry_addr) = bind().await;
        let (registry_admin, registry_admin_addr) = bind().await;
        let (dispatch_grpc, dispatch_addr) = bind().await;
        let (dispatch_admin, dispatch_admin_addr) = bind().await;
        let (gateway, gateway_addr) = bind().await;
        let mut env = base_env(&prefix);
        env.set("HERALD_REGISTRY_URL", format!("http://{registry_addr}"));
        env.set("HERALD_DISPATCH_URL", format!("http://{dispatch_addr}"));
        env.set("HERALD_REGISTRY_LISTEN", registry_addr.to_string());
        env.set("HERALD_DISPATCH_LISTEN", dispatch_addr.to_string());
        env.set("HERALD_GATEWAY_LISTEN", gateway_addr.to_string());
        env.set("HERALD_REGISTRY_ADMIN_LISTEN", registry_admin_addr.to_string());
        env.set("HERALD_DISPATCH_ADMIN_LISTEN", dispatch_admin_addr.to_string());
        customise(&mut env);
        let config = HeraldConfig::from_env(&env, false).expect("test configuration is valid");
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        if services.registry {
            let (cfg, token) = (config.clone(), shutdown.clone());
            tasks.push((
                "registry",
                tokio::spawn(async move {
                    herald_registry::run(cfg, registry_grpc, registry_admin, token).await.map_err(|e| e.to_string())
                }),
            ));
        }
        if services.dispatch {
            let (cfg, token) = (config.clone(), shutdown.clone());
            tasks.push((
                "dispatch",
                tokio::spawn(async move {
                    herald_dispatch::run(cfg, dispatch_grpc, dispatch_admin, token).await.map_err(|e| e.to_string())
                }),
            ));
        }
        if services.gateway {
            let (cfg, token) = (config.clone(), shutdown.clone());
            tasks.push((
                "gateway",
                tokio::spawn(async move { herald_gateway::run(cfg, gateway, token).await.map_err(|e| e.to_string()) }),
            ));
        }
        let stack = Stack {
            keys: config.keys(),
            prefix,
            config,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            gateway_url: format!("http://{gateway_addr}"),
            registry_url: format!("http://{registry_addr}"),
            dispatch_url: format!("http://{dispatch_addr}"),
            registry_admin_url: format!("http://{registry_admin_addr}"),
            dispatch_admin_url: format!("http://{dispatch_admin_addr}"),
            shutdown,
            tasks,
        };
        stack.wait_ready(services).await;
        stack
    }

    async fn wait_ready(&self, services: Services) {
        let mut urls = Vec::new();
        if services.registry {
            urls.push(format!("{}/readyz", self.registry_admin_url));
        }
        if services.dispatch {
            urls.push(format!("{}/readyz", self.dispatch_admin_url));
        }
        if services.gateway && services.registry && services.dispatch {
            urls.push(format!("{}/readyz", self.gateway_url));
        } else if services.gateway {
            urls.push(format!("{}/healthz", self.gateway_url));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for url in urls {
            loop {
                if let Some((name, task)) = self.tasks.iter().find(|(_, t)| t.is_finished()) {
                    panic!("{name} stopped during start-up: {task:?}");
                }
                match self.http.get(&url).timeout(Duration::from_secs(2)).send().await {
                    Ok(r) if r.status().is_success() => break,
                    _ if Instant::now() > deadline => panic!("{url} never became ready"),
                    _ => tokio::time::sleep(Duration::from_millis(25)).await,
                }
            }
        }
    }

    /// A Redis connection for inspecting what the services stored.
    pub async fn redis(&self) -> herald_common::redis_conn::RedisConn {
        herald_common::redis_conn::connect(&self.config.redis).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway_url)
    }

    /// A request to the gateway with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN)
    }

    /// A request to the gateway with a tenant API key.
    pub fn tenant(&self, key: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn admin_post(&self, path: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        json_answer(self.admin(reqwest::Method::POST, path).json(&body).send().await.unwrap()).await
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        json_answer(self.admin(reqwest::Method::GET, path).send().await.unwrap()).await
    }

    /// Creates a tenant and an API key for it; answers the key.
    pub async fn tenant_with_key(&self, tenant: &str) -> String {
        let (status, body) = self.admin_post("/v1/tenants", serde_json::json!({"id": tenant, "name": tenant})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) =
            self.admin_post(&format!("/v1/tenants/{tenant}/api-keys"), serde_json::json!({"name": "test"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["key"].as_str().unwrap().to_owned()
    }

    /// A tonic channel to the registry.
    pub async fn registry_channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.registry_url.clone()).unwrap().connect().await.unwrap()
    }

    /// A tonic channel to the dispatcher.
    pub async fn dispatch_channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.dispatch_url.clone()).unwrap().connect().await.unwrap()
    }

    /// Stops every service and waits for them to exit.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for (name, task) in self.tasks.drain(..) {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("{name} failed: {e}"),
                Ok(Err(e)) => panic!("{name} panicked: {e}"),
                Err(_) => panic!("{name} did not stop within 15s"),
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Status and JSON body (or `null`) of an answer.
pub async fn json_answer(response: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, body)
}

// ---------------------------------------------------------------- receiver

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How a receiver answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    script: Mutex<std::collections::VecDeque<Reply>>,
    default_reply: Mutex<Option<Reply>>,
    arrived: Notify,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// While set, answers wait (after the request is recorded) until released.
    held: std::sync::atomic::AtomicBool,
    released: Notify,
}

/// A real HTTP server on 127.0.0.1:0 that records every request.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    _server: JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut flat = HashMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        flat.entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let reply = {
        let scripted = state.script.lock().unwrap().pop_front();
        scripted.or_else(|| state.default_reply.lock().unwrap().clone()).unwrap_or_else(|| Reply::status(204))
    };
    // Recorded on arrival, so a test sees a request even while its answer is delayed.
    state.requests.lock().unwrap().push(Received {
        method: method.to_string(),
        path: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: flat,
        body,
        at: Instant::now(),
    });
    state.arrived.notify_waiters();
    loop {
        let released = state.released.notified();
        if !state.held.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new().fallback(receive).with_state(state.clone());
        let (listener, addr) = bind().await;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state, _server: server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answer every request not otherwise scripted with `status`.
    pub fn respond_with(&self, status: u16) {
        *self.state.default_reply.lock().unwrap() = Some(Reply::status(status));
    }

    pub fn respond_with_reply(&self, reply: Reply) {
        *self.state.default_reply.lock().unwrap() = Some(reply);
    }

    /// Requests from now on are recorded but not answered until [`Self::release`].
    pub fn hold(&self) {
        self.state.held.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.state.held.store(false, Ordering::SeqCst);
        self.state.released.notify_waiters();
    }

    /// Answer the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Most requests this receiver was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            {
                let requests = self.state.requests.lock().unwrap();
                if requests.len() >= n {
                    return requests.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let got = self.count();
                if got >= n {
                    return self.received();
                }
                panic!("receiver got {got} of {n} requests within {timeout:?}");
            }
        }
    }
}

// ---------------------------------------------------------------- judges

/// Root of the workspace.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The Python interpreter with the outside judges installed
/// (`standardwebhooks`, `cloudevents`, `grpcio`, `grpcio-reflection`).
pub fn python() -> PathBuf {
    std::env::var("HERALD_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|_| workspace_root().join(".venv/bin/python"))
}

/// A service binary built by `cargo build --bins` (the test command builds
/// them first), for tests that need real processes to kill.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test-binary>
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` first", path.display());
    path
}
