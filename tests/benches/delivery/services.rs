//! The processes the benchmark starts and stops: the three release
//! binaries (two dispatchers with `--cluster`), each on free loopback ports
//! with its log in the temporary directory, killed when dropped, on a panic,
//! and by a watchdog should the benchmark itself be killed; and the summary
//! of what they logged.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{ADMIN_TOKEN, Args};

/// A child process killed when dropped (also on panic), plus a shell
/// watchdog that kills it should this benchmark itself be killed.
pub struct Guarded {
    pub name: &'static str,
    child: Child,
    watchdog: Option<Child>,
}

impl Guarded {
    pub fn new(name: &'static str, child: Child) -> Guarded {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
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
pub struct TempDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What each dispatcher's process and log are called, in start order.
const DISPATCHER_NAMES: [&str; 2] = ["herald-dispatch", "herald-dispatch-2"];

/// How many dispatchers the benchmark can start.
pub const MAX_DISPATCHERS: usize = DISPATCHER_NAMES.len();

pub struct Services {
    pub registry: Guarded,
    /// In start order; the gateway talks to the first.
    pub dispatchers: Vec<Guarded>,
    /// Not started with `--setup grpc`: nothing on the delivery path goes through it.
    pub gateway: Option<Guarded>,
    pub gateway_url: String,
    pub registry_url: String,
    /// Each dispatcher's admin URL (`/metrics`), in the order of `dispatchers`.
    pub dispatch_admin_urls: Vec<String>,
    pub logs: PathBuf,
}

impl Services {
    pub fn all_mut(&mut self) -> Vec<&mut Guarded> {
        let mut all = vec![&mut self.registry];
        all.extend(self.dispatchers.iter_mut());
        all.extend(self.gateway.as_mut());
        all
    }

    /// Every process's name, which is also its log's.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = vec![self.registry.name];
        names.extend(self.dispatchers.iter().map(|d| d.name));
        names.push("herald-gateway");
        names
    }
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], herald_tests::free_port()))
}

/// Starts `binary` as `name` (which names its log too).
fn spawn_service(binary: &str, name: &'static str, env: &[(String, String)], logs: &Path) -> Result<Guarded> {
    let binary = herald_tests::binary(binary);
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

/// Starts the registry, `dispatchers` dispatchers (at most
/// [`MAX_DISPATCHERS`]) and the gateway against the Redis that `redis_env`
/// names (`HERALD_REDIS_URL` or `HERALD_REDIS_CLUSTER_URLS`), and waits
/// until every one is ready.
pub async fn start_services(
    redis_env: (String, String),
    dispatchers: usize,
    args: &Args,
    dir: &Path,
) -> Result<Services> {
    let (registry, registry_admin, gateway) = (addr(), addr(), addr());
    let dispatch: Vec<(SocketAddr, SocketAddr)> =
        (0..dispatchers.clamp(1, MAX_DISPATCHERS)).map(|_| (addr(), addr())).collect();
    let base: Vec<(String, String)> = vec![
        redis_env,
        ("HERALD_SECRET_KEY".into(), herald_tests::SECRET_KEY.into()),
        ("HERALD_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ("HERALD_ALLOW_PRIVATE_NETWORKS".into(), "true".into()),
        ("HERALD_ALLOW_HTTP".into(), "true".into()),
        ("HERALD_REGISTRY_LISTEN".into(), registry.to_string()),
        ("HERALD_REGISTRY_ADMIN_LISTEN".into(), registry_admin.to_string()),
        ("HERALD_DISPATCH_LISTEN".into(), dispatch[0].0.to_string()),
        ("HERALD_DISPATCH_ADMIN_LISTEN".into(), dispatch[0].1.to_string()),
        ("HERALD_GATEWAY_LISTEN".into(), gateway.to_string()),
        ("HERALD_REGISTRY_URL".into(), format!("http://{registry}")),
        ("HERALD_DISPATCH_URL".into(), format!("http://{}", dispatch[0].0)),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let extra = &args.service_env;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    // `--service-env` comes last, so it wins over what the benchmark sets.
    let env: Vec<(String, String)> = base.iter().chain(extra).cloned().collect();
    let registry_process = spawn_service("herald-registry", "herald-registry", &env, &logs)?;
    let mut dispatch_processes = Vec::new();
    for ((listen, admin), name) in dispatch.iter().zip(DISPATCHER_NAMES) {
        // The same environment, but each dispatcher on its own ports.
        let mut own = base.clone();
        for (key, value) in own.iter_mut() {
            match key.as_str() {
                "HERALD_DISPATCH_LISTEN" => *value = listen.to_string(),
                "HERALD_DISPATCH_ADMIN_LISTEN" => *value = admin.to_string(),
                _ => {}
            }
        }
        own.extend(extra.iter().cloned());
        dispatch_processes.push(spawn_service("herald-dispatch", name, &own, &logs)?);
    }
    let gateway_process =
        if args.setup_grpc { None } else { Some(spawn_service("herald-gateway", "herald-gateway", &env, &logs)?) };
    let mut services = Services {
        registry: registry_process,
        dispatchers: dispatch_processes,
        gateway: gateway_process,
        gateway_url: format!("http://{gateway}"),
        registry_url: format!("http://{registry}"),
        dispatch_admin_urls: dispatch.iter().map(|(_, admin)| format!("http://{admin}")).collect(),
        logs: logs.clone(),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = vec![format!("http://{registry_admin}/readyz")];
    ready.extend(services.dispatch_admin_urls.iter().map(|url| format!("{url}/readyz")));
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

/// Warnings and errors the services logged, counted per service (`names`
/// as [`Services::names`]).
pub fn log_summary(logs: &Path, names: &[&str]) -> String {
    let mut out = String::new();
    for name in names {
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
