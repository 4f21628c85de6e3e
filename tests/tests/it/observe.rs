//! Observability and operation: one trace from the publisher to the
//! webhook (checked at the receiver and, with real processes, at an OTLP
//! collector), the Prometheus series every process exports, health and
//! readiness, and graceful shutdown of a dispatcher on SIGTERM with a
//! successor that finishes its work.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{CreateTenantRequest, GetTenantRequest, PublishBatchRequest, PublishRequest};
use herald_tests::{ADMIN_TOKEN, Receiver, Reply, Services, Stack, TokenServer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_stream::wrappers::TcpListenerStream;

const WAIT: Duration = Duration::from_secs(30);
const EVENT_TYPE: &str = "order.created";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

// ------------------------------------------------------------------ helpers

async fn json_of(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.timeout(Duration::from_secs(20)).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The tenant `acme` (with a key), the event type, and one endpoint per URL
/// subscribed to everything; answers the key and the endpoint ids.
async fn set_up(http: &reqwest::Client, gateway: &str, endpoints: &[Value]) -> (String, Vec<String>) {
    let admin = |method: Method, path: &str| http.request(method, format!("{gateway}{path}")).bearer_auth(ADMIN_TOKEN);
    let (status, body) = json_of(admin(Method::POST, "/v1/tenants").json(&json!({"id": "acme", "name": "Acme"}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = json_of(admin(Method::POST, "/v1/tenants/acme/api-keys").json(&json!({"name": "t"}))).await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let (status, body) =
        json_of(admin(Method::POST, "/v1/event-types").json(&json!({"name": EVENT_TYPE, "description": "d"}))).await;
    assert_eq!(status, 201, "{body}");
    let tenant = |method: Method, path: &str| http.request(method, format!("{gateway}{path}")).bearer_auth(&key);
    let mut ids = Vec::new();
    for spec in endpoints {
        let (status, body) = json_of(tenant(Method::POST, "/v1/endpoints").json(spec)).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let (status, body) =
            json_of(tenant(Method::POST, "/v1/subscriptions").json(&json!({"endpointId": id, "eventTypes": ["*"]})))
                .await;
        assert_eq!(status, 201, "{body}");
        ids.push(id);
    }
    (key, ids)
}

fn event(id: &str) -> PublishRequest {
    herald_tests::publish_request("acme", id, EVENT_TYPE)
}

/// `(trace id, span id)` of a W3C `traceparent`.
fn trace_and_span(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "malformed traceparent {traceparent:?}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// One Prometheus sample.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter_map(|pair| pair.split_once("=\""))
            .map(|(k, v)| (k.trim().to_owned(), v.trim_end_matches('"').to_owned()))
            .collect();
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    samples
}

/// Sum of the samples named `name` whose labels include `labels`.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(http: &reqwest::Client, base: &str) -> (String, Vec<Sample>) {
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{base}/metrics");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let samples = parse_metrics(&text);
    (text, samples)
}

/// Waits until `check` holds for a fresh scrape of `base`; panics with the
/// last scrape after `WAIT`.
async fn wait_metrics(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    check: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (text, samples) = scrape(http, base).await;
        if check(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what} never showed on {base}/metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- processes

/// A Herald binary started by this test, logging to a file; SIGKILLed if
/// still running when dropped.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, env: &[(String, String)]) -> Process {
        let dir = std::env::temp_dir().join(format!("herald-observe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{name}-{}.log", herald_tests::free_port()));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(herald_tests::binary(name))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Process { name, child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Panics (with the log) when the process already exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}:\n{}", self.name, self.log_tail());
        }
    }

    /// Sends SIGTERM, as Kubernetes does.
    fn terminate(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit; panics after `within`.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {within:?} after SIGTERM:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn loopback() -> String {
    format!("127.0.0.1:{}", herald_tests::free_port())
}

/// The environment of a Herald process in a test: the harness's settings
/// with this prefix, logs at `warn`, no tracing export unless added.
fn process_env(prefix: &str) -> Vec<(String, String)> {
    [
        ("HERALD_REDIS_URL", herald_tests::redis_url()),
        ("HERALD_REDIS_PREFIX", prefix.to_owned()),
        ("HERALD_SECRET_KEY", herald_tests::SECRET_KEY.to_owned()),
        ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("HERALD_ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
        ("HERALD_ALLOW_HTTP", "true".to_owned()),
        ("HERALD_PARTITIONS", "4".to_owned()),
        ("HERALD_DELIVERY_TIMEOUT_MS", "2000".to_owned()),
        ("HERALD_RETRY_SCHEDULE", "200ms,400ms,800ms".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn with(env: &[(String, String)], extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut all = env.to_vec();
    all.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    all
}

/// Waits until `url` answers 2xx while every process keeps running.
async fn wait_ready(http: &reqwest::Client, url: &str, processes: &mut [&mut Process]) {
    let deadline = Instant::now() + WAIT;
    loop {
        for p in processes.iter_mut() {
            p.assert_running();
        }
        match http.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) if r.status().is_success() => return,
            _ => {
                assert!(Instant::now() < deadline, "{url} never became ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A CA and a server certificate for `localhost` signed by it, as PEM files
/// in `dir`: (CA, server certificate, server key).
fn private_ca(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Herald test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

/// `rediss://` with a private CA (`HERALD_REDIS_CA_FILE`): the registry
/// becomes ready and works over TLS; without the CA it refuses the server's
/// certificate and never becomes ready.
#[tokio::test]
async fn redis_over_tls_is_verified_against_the_configured_ca() {
    let dir = std::env::temp_dir().join(format!("herald-tls-{}", herald_tests::unique_prefix()));
    let (ca, cert, key) = private_ca(&dir);
    let tls_port = herald_tests::free_port().to_string();
    let (cert, key, ca_file) = (cert.display().to_string(), key.display().to_string(), ca.display().to_string());
    // `--port 0` after the harness's own `--port`: TLS only.
    let mut redis = herald_tests::spawn_redis(
        0,
        &dir.join("data"),
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://localhost:{tls_port}");
    let http = reqwest::Client::new();

    let (grpc, admin) = (loopback(), loopback());
    let env = with(
        &process_env(&herald_tests::unique_prefix()),
        &[
            ("HERALD_REDIS_URL", url.clone()),
            ("HERALD_REDIS_CA_FILE", ca_file.clone()),
            ("HERALD_REGISTRY_LISTEN", grpc.clone()),
            ("HERALD_REGISTRY_ADMIN_LISTEN", admin.clone()),
        ],
    );
    let mut registry = Process::spawn("herald-registry", &env);
    wait_ready(&http, &format!("http://{admin}/readyz"), &mut [&mut registry]).await;
    let mut client = RegistryClient::connect(format!("http://{grpc}")).await.unwrap();
    client.create_tenant(CreateTenantRequest { id: "tls".into(), name: "Over TLS".into() }).await.unwrap();
    let tenant = client.get_tenant(GetTenantRequest { id: "tls".into() }).await.unwrap().into_inner();
    assert_eq!(tenant.name, "Over TLS");

    let (grpc, admin) = (loopback(), loopback());
    let env = with(
        &process_env(&herald_tests::unique_prefix()),
        &[("HERALD_REDIS_URL", url), ("HERALD_REGISTRY_LISTEN", grpc), ("HERALD_REGISTRY_ADMIN_LISTEN", admin.clone())],
    );
    let mut untrusting = Process::spawn("herald-registry", &env);
    // Alive (liveness answers while it waits for Redis) but never ready.
    wait_ready(&http, &format!("http://{admin}/healthz"), &mut [&mut untrusting]).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let probe = http.get(format!("http://{admin}/readyz")).timeout(Duration::from_secs(2)).send().await.unwrap();
        assert_eq!(probe.status(), 503, "a registry without the CA trusted the server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = untrusting.log_tail();
    assert!(log.contains("certificate"), "the refusal names the certificate:\n{log}");
    drop(untrusting);
    drop(registry);
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------ OTLP collector

/// One exported span, as the collector saw it.
#[derive(Clone, Debug)]
struct SeenSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// A minimal OTLP/gRPC trace collector on 127.0.0.1:0.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<SeenSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut seen = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    seen.push(SeenSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(seen);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        (collector, addr)
    }

    fn in_trace(&self, trace_id: &str) -> Vec<SeenSpan> {
        self.spans.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }
}

// -------------------------------------------------------------------- tests

/// A trace begun by the caller (REST `traceparent` header, gRPC
/// `traceparent` metadata) continues through the stream into the webhook:
/// the receiver's `traceparent` has the caller's trace id and a span id of
/// Herald's own.
#[tokio::test]
async fn the_callers_trace_continues_into_the_webhook() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    set_up(&stack.http, &stack.gateway_url, &[json!({"url": receiver.url()})]).await;

    let rest_trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, body) = json_of(
        stack
            .admin(Method::POST, "/v1/events")
            .header("traceparent", format!("00-{rest_trace}-{CALLER_SPAN}-01"))
            .json(&json!({"tenant": "acme", "id": "rest-1", "type": EVENT_TYPE, "data": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let mut registry = RegistryClient::new(stack.registry_channel().await);
    let mut request = tonic::Request::new(event("grpc-1"));
    request.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01").parse().unwrap());
    let answer = registry.publish(request).await.unwrap().into_inner();
    assert_eq!(answer.deliveries, 1);

    let got = receiver.wait_for(2, WAIT).await;
    for (event_id, trace) in [("rest-1", rest_trace), ("grpc-1", TRACE_ID)] {
        let webhook = got.iter().find(|r| r.header("webhook-id") == Some(event_id)).unwrap();
        let traceparent = webhook.header("traceparent").expect("the webhook carries a traceparent");
        let (trace_id, span_id) = trace_and_span(traceparent);
        assert_eq!(trace_id, trace, "{event_id}: webhook traceparent {traceparent} left the caller's trace");
        assert_ne!(span_id, CALLER_SPAN, "{event_id}: the webhook span is Herald's, not the caller's");
        assert_ne!(span_id, "0000000000000000", "{traceparent}");
        println!("{event_id}: caller 00-{trace}-{CALLER_SPAN}-01 -> webhook {traceparent}");
    }

    // Without a caller trace, each webhook still starts a valid trace of its own.
    let answer = registry.publish(event("untraced")).await.unwrap().into_inner();
    assert_eq!(answer.deliveries, 1);
    let got = receiver.wait_for(3, WAIT).await;
    let webhook = got.iter().find(|r| r.header("webhook-id") == Some("untraced")).unwrap();
    let (trace_id, _) = trace_and_span(webhook.header("traceparent").unwrap());
    assert_ne!(trace_id, "00000000000000000000000000000000");
    assert!(![TRACE_ID, rest_trace].contains(&trace_id.as_str()));
    stack.stop().await;
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the three real processes export
/// their spans over OTLP/gRPC; one REST publish makes one trace whose spans
/// come from the gateway, the registry and the dispatcher, and the
/// webhook's `traceparent` names the dispatcher's delivery span. Each
/// process then exits 0 on SIGTERM.
#[tokio::test]
async fn gateway_registry_and_dispatch_export_one_trace_over_otlp() {
    let (collector, collector_addr) = Collector::start().await;
    let receiver = Receiver::start().await;
    let (registry_grpc, registry_admin, dispatch_grpc, dispatch_admin, gateway) =
        (loopback(), loopback(), loopback(), loopback(), loopback());
    let env = with(
        &process_env(&herald_tests::unique_prefix()),
        &[
            ("HERALD_REGISTRY_LISTEN", registry_grpc.clone()),
            ("HERALD_REGISTRY_ADMIN_LISTEN", registry_admin.clone()),
            ("HERALD_DISPATCH_LISTEN", dispatch_grpc.clone()),
            ("HERALD_DISPATCH_ADMIN_LISTEN", dispatch_admin.clone()),
            ("HERALD_GATEWAY_LISTEN", gateway.clone()),
            ("HERALD_REGISTRY_URL", format!("http://{registry_grpc}")),
            ("HERALD_DISPATCH_URL", format!("http://{dispatch_grpc}")),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector_addr}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    );
    let mut registry = Process::spawn("herald-registry", &env);
    let mut dispatch = Process::spawn("herald-dispatch", &env);
    let mut gateway_process = Process::spawn("herald-gateway", &env);
    let http = reqwest::Client::new();
    let gateway_url = format!("http://{gateway}");
    for url in [
        format!("http://{registry_admin}/readyz"),
        format!("http://{dispatch_admin}/readyz"),
        format!("{gateway_url}/readyz"),
    ] {
        wait_ready(&http, &url, &mut [&mut registry, &mut dispatch, &mut gateway_process]).await;
    }
    set_up(&http, &gateway_url, &[json!({"url": receiver.url()})]).await;

    let (status, body) = json_of(
        http.post(format!("{gateway_url}/v1/events"))
            .bearer_auth(ADMIN_TOKEN)
            .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
            .json(&json!({"tenant": "acme", "id": "otlp-1", "type": EVENT_TYPE, "data": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let got = receiver.wait_for(1, WAIT).await;
    let (trace_id, webhook_span) = trace_and_span(got[0].header("traceparent").unwrap());
    assert_eq!(trace_id, TRACE_ID);

    let wanted = ["herald-gateway", "herald-registry", "herald-dispatch"];
    let deadline = Instant::now() + WAIT;
    let spans = loop {
        let spans = collector.in_trace(TRACE_ID);
        let services: HashSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        if wanted.iter().all(|w| services.contains(w)) && spans.iter().any(|s| s.span_id == webhook_span) {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans of trace {TRACE_ID} never came from all three services: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for s in &spans {
        println!("span {} {} trace={} span={} parent={}", s.service, s.name, s.trace_id, s.span_id, s.parent_span_id);
    }
    let by_id: HashMap<&str, &SeenSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let gateway_root = spans.iter().find(|s| s.service == "herald-gateway" && s.parent_span_id == CALLER_SPAN);
    assert!(gateway_root.is_some(), "the gateway's request span is a child of the caller's span: {spans:#?}");
    // The delivery span descends, through the registry's publish, from the gateway's request.
    let delivery = by_id[webhook_span.as_str()];
    assert_eq!(delivery.service, "herald-dispatch", "{delivery:?}");
    let mut chain = vec![delivery.service.clone()];
    let mut at = delivery;
    while let Some(parent) = by_id.get(at.parent_span_id.as_str()) {
        chain.push(parent.service.clone());
        at = parent;
    }
    assert_eq!(at.parent_span_id, CALLER_SPAN, "the chain from the webhook reaches the caller: {chain:?}");
    assert!(chain.contains(&"herald-registry".to_owned()), "{chain:?}");
    assert!(chain.contains(&"herald-gateway".to_owned()), "{chain:?}");
    println!("webhook span {webhook_span} descends through {chain:?} from the caller's span {CALLER_SPAN}");

    for p in [&mut gateway_process, &mut dispatch, &mut registry] {
        p.terminate();
        let status = p.exited(Duration::from_secs(15)).await;
        assert!(status.success(), "{} exited with {status} on SIGTERM:\n{}", p.name, p.log_tail());
    }
}

/// The Prometheus series of publishing, delivery, retries, OAuth tokens,
/// partitions, actors, breakers and HTTP requests exist and move, and every
/// process answers `/healthz` and `/readyz`.
#[tokio::test]
async fn metrics_describe_publishing_delivery_and_requests() {
    // A breaker that opens after three failures and stays open for the test.
    let stack = Stack::start_with(|env| {
        env.set("HERALD_CIRCUIT_FAILURES", "3");
        env.set("HERALD_CIRCUIT_FAILING_FOR", "0s");
        env.set("HERALD_CIRCUIT_COOL_DOWN", "60s");
    })
    .await;
    let http = &stack.http;
    for url in [&stack.registry_admin_url, &stack.dispatch_admin_url, &stack.gateway_url] {
        for probe in ["healthz", "readyz"] {
            let response = http.get(format!("{url}/{probe}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}/{probe}");
        }
    }
    let (_, before) = scrape(http, &stack.registry_admin_url).await;
    let counter =
        |samples: &[Sample], name: &str, labels: &[(&str, &str)]| metric(samples, name, labels).unwrap_or(0.0);

    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    let tokens = TokenServer::start().await;
    let oauth = json!({"url": format!("{}?oauth", ok.url()), "auth": {
        "type": "oauth2_client_credentials", "tokenUrl": tokens.url(), "clientId": "c", "clientSecret": "s"}});
    set_up(http, &stack.gateway_url, &[json!({"url": ok.url()}), json!({"url": failing.url()}), oauth]).await;
    let mut registry = RegistryClient::new(stack.registry_channel().await);
    let events = (0..5).map(|i| event(&format!("m-{i}"))).collect();
    let answer = registry.publish_batch(PublishBatchRequest { events }).await.unwrap().into_inner();
    assert_eq!(answer.results.iter().map(|r| r.deliveries).sum::<u32>(), 15);
    // 5 to the good endpoint and 5 with OAuth; the failing one trips its breaker.
    ok.wait_for(10, WAIT).await;
    failing.wait_for(3, WAIT).await;

    let after = wait_metrics(http, &stack.registry_admin_url, "publishing counters", |s| {
        counter(s, "herald_events_published_total", &[]) >= counter(&before, "herald_events_published_total", &[]) + 5.0
            && counter(s, "herald_jobs_enqueued_total", &[])
                >= counter(&before, "herald_jobs_enqueued_total", &[]) + 15.0
    })
    .await;
    // gRPC calls are counted by method and status code.
    let refused = registry.publish(PublishRequest { tenant: "nobody".into(), ..event("x") }).await.unwrap_err();
    let code = (refused.code() as i32).to_string();
    let grpc = [("service", "herald.v1.Registry"), ("method", "Publish"), ("code", code.as_str())];
    wait_metrics(http, &stack.registry_admin_url, "grpc series", |s| {
        metric(s, "herald_grpc_requests_total", &grpc).is_some()
            && metric(s, "herald_grpc_requests_total", &[("method", "PublishBatch"), ("code", "0")]).is_some()
            && metric(s, "herald_grpc_request_duration_seconds_count", &[("method", "PublishBatch")]).is_some()
    })
    .await;
    let dispatch = wait_metrics(http, &stack.dispatch_admin_url, "delivery series", |s| {
        counter(s, "herald_deliveries_total", &[("outcome", "delivered")])
            >= counter(&before, "herald_deliveries_total", &[("outcome", "delivered")]) + 10.0
            && counter(s, "herald_deliveries_total", &[("outcome", "retrying")])
                >= counter(&before, "herald_deliveries_total", &[("outcome", "retrying")]) + 5.0
            && counter(s, "herald_retries_scheduled_total", &[])
                >= counter(&before, "herald_retries_scheduled_total", &[]) + 5.0
            && counter(s, "herald_attempt_duration_seconds_count", &[])
                >= counter(&before, "herald_attempt_duration_seconds_count", &[]) + 13.0
            && counter(s, "herald_token_requests_total", &[("result", "ok")])
                >= counter(&before, "herald_token_requests_total", &[("result", "ok")]) + 1.0
            && metric(s, "herald_circuit_state", &[("state", "closed")]).is_some_and(|n| n >= 2.0)
            && metric(s, "herald_circuit_state", &[("state", "open")]).is_some_and(|n| n >= 1.0)
            && metric(s, "herald_live_actors", &[]).is_some_and(|n| n >= 3.0)
            && metric(s, "herald_partitions_owned", &[]).is_some()
    })
    .await;
    for (name, labels) in [
        ("herald_attempt_duration_seconds_bucket", &[("le", "+Inf")][..]),
        ("herald_attempt_duration_seconds_sum", &[][..]),
        ("herald_stream_pending", &[("partition", "0")][..]),
        ("herald_stream_lag", &[("partition", "0")][..]),
        ("herald_circuit_state", &[("state", "closed")][..]),
    ] {
        assert!(metric(&dispatch, name, labels).is_some(), "{name}{labels:?} is missing");
    }
    assert!(tokens.requests() >= 1);

    let gateway = wait_metrics(http, &stack.gateway_url, "http series", |s| {
        metric(s, "herald_http_requests_total", &[("route", "/v1/endpoints"), ("status", "201")])
            .is_some_and(|n| n >= 3.0)
    })
    .await;
    assert!(metric(&gateway, "herald_http_request_duration_seconds_count", &[("route", "/v1/endpoints")]).is_some());
    // Routes are labelled by pattern, not by the concrete path.
    assert!(gateway.iter().all(|s| !s.labels.get("route").is_some_and(|r| r.contains("ep_"))));
    println!(
        "events published {} -> {}, jobs enqueued {} -> {}",
        counter(&before, "herald_events_published_total", &[]),
        counter(&after, "herald_events_published_total", &[]),
        counter(&before, "herald_jobs_enqueued_total", &[]),
        counter(&after, "herald_jobs_enqueued_total", &[]),
    );
    let (text, _) = scrape(http, &stack.dispatch_admin_url).await;
    let excerpt: Vec<&str> = text
        .lines()
        .filter(|l| {
            [
                "herald_deliveries_total",
                "herald_retries_scheduled_total",
                "herald_token_requests_total",
                "herald_circuit_state",
                "herald_stream_lag{partition=\"0\"}",
                "herald_stream_pending{partition=\"0\"}",
                "herald_partitions_owned",
                "herald_live_actors",
                "herald_attempt_duration_seconds_count",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    println!("{}", excerpt.join("\n"));
    stack.stop().await;
}

/// The gateway is not ready while the dispatcher is down (the registry
/// being up is not enough), though it stays alive; the registry is ready.
#[tokio::test]
async fn gateway_is_not_ready_without_the_dispatcher() {
    let closed = format!("http://127.0.0.1:{}", herald_tests::free_port());
    let stack =
        Stack::start_services_with(Services::REGISTRY_AND_GATEWAY, |env| env.set("HERALD_DISPATCH_URL", closed)).await;
    let started = Instant::now();
    let readyz = stack.http.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503, "{}", readyz.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(5), "readyz took {:?}", started.elapsed());
    assert_eq!(stack.http.get(stack.url("/healthz")).send().await.unwrap().status(), 200);
    let registry = stack.http.get(format!("{}/readyz", stack.registry_admin_url)).send().await.unwrap();
    assert_eq!(registry.status(), 200);
    stack.stop().await;
}

/// SIGTERM to a dispatcher in the middle of 200 slow deliveries: it stops
/// taking work, lets its running attempts finish, hands its partitions
/// back and exits 0 within the grace period. A second dispatcher then
/// delivers the rest: all 200 arrive, none twice, and nothing is left
/// pending in the streams or waiting in the retry sets.
#[tokio::test]
async fn sigterm_drains_a_dispatcher_and_its_successor_delivers_the_rest() {
    const ENDPOINTS: usize = 4;
    const EVENTS: usize = 50;
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let receiver = Receiver::start().await;
    receiver.respond_with_reply(Reply::status(200).delay(Duration::from_millis(300)));
    // Four endpoints (spread over the partitions) on one receiver, told apart by path.
    let specs: Vec<Value> =
        (0..ENDPOINTS).map(|i| json!({"url": format!("{}/{i}", receiver.url()), "maxInFlight": 5})).collect();
    set_up(&stack.http, &stack.gateway_url, &specs).await;

    let env = with(&process_env(&stack.prefix), &[("HERALD_REGISTRY_URL", stack.registry_url.clone())]);
    let dispatch_env = |admin: &str| {
        with(&env, &[("HERALD_DISPATCH_LISTEN", loopback()), ("HERALD_DISPATCH_ADMIN_LISTEN", admin.to_owned())])
    };
    let first_admin = loopback();
    let mut first = Process::spawn("herald-dispatch", &dispatch_env(&first_admin));
    wait_ready(&stack.http, &format!("http://{first_admin}/readyz"), &mut [&mut first]).await;

    let mut registry = RegistryClient::new(stack.registry_channel().await);
    let events = (0..EVENTS).map(|i| event(&format!("drain-{i}"))).collect();
    let answer = registry.publish_batch(PublishBatchRequest { events }).await.unwrap().into_inner();
    let total = answer.results.iter().map(|r| r.deliveries as usize).sum::<usize>();
    assert_eq!(total, ENDPOINTS * EVENTS);

    receiver.wait_for(40, WAIT).await;
    let signalled = Instant::now();
    first.terminate();
    let status = first.exited(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "the dispatcher exited with {status}:\n{}", first.log_tail());
    let at_exit = receiver.count();
    println!("dispatcher exited 0 {took:?} after SIGTERM; {at_exit} of {total} delivered by then");
    assert!(at_exit < total, "everything was delivered before SIGTERM: the test proves nothing");
    // Its leases were handed back, not left to expire.
    let mut conn = stack.redis().await;
    for p in 0..stack.config.partitions {
        let owner: Option<String> =
            redis::cmd("GET").arg(stack.keys.partition_lease(p)).query_async(&mut conn).await.unwrap();
        assert_eq!(owner, None, "partition {p} is still leased after a clean exit");
    }

    let second_admin = loopback();
    let mut second = Process::spawn("herald-dispatch", &dispatch_env(&second_admin));
    wait_ready(&stack.http, &format!("http://{second_admin}/readyz"), &mut [&mut second]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let distinct = loop {
        second.assert_running();
        let distinct: HashSet<(String, String)> = receiver
            .received()
            .iter()
            .filter_map(|r| Some((r.path.clone(), r.header("webhook-id")?.to_owned())))
            .collect();
        if distinct.len() >= total {
            break distinct;
        }
        assert!(Instant::now() < deadline, "{} of {total} deliveries arrived", distinct.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(distinct.len(), total);
    println!("successor finished: {} requests for {total} deliveries", receiver.count());

    // Every entry acknowledged, every retry set empty.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut left = Vec::new();
        for p in 0..stack.config.partitions {
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(stack.keys.partition_stream(p))
                .arg(herald_common::keys::CONSUMER_GROUP)
                .query_async(&mut conn)
                .await
                .unwrap();
            let pending = match summary {
                redis::Value::Array(items) => match items.first() {
                    Some(redis::Value::Int(n)) => *n,
                    _ => 0,
                },
                _ => 0,
            };
            let retries: i64 = redis::cmd("ZCARD").arg(stack.keys.retry_set(p)).query_async(&mut conn).await.unwrap();
            if pending + retries > 0 {
                left.push((p, pending, retries));
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "(partition, pending, retries) left: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.count(), total, "a graceful stop sends nothing twice");

    second.terminate();
    let status = second.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "the successor exited with {status}:\n{}", second.log_tail());
    stack.stop().await;
}
