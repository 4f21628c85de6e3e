//! What the benchmark reads from `/proc` and the machine: CPU seconds per
//! process and for the whole machine, resident memory, and the description
//! printed at the head of the report. With `--cluster` a role runs as
//! several processes (three `redis-server`s, two dispatchers); their CPU
//! and memory are summed per role.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

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
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// The processes whose CPU the report accounts for, by role.
#[derive(Clone, Debug)]
pub struct Pids {
    pub registry: u32,
    /// Every dispatcher.
    pub dispatch: Vec<u32>,
    /// 0 when the gateway is not started (`--setup grpc`).
    pub gateway: u32,
    /// Every `redis-server`.
    pub redis: Vec<u32>,
    pub bench: u32,
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
pub struct Cpu {
    /// Everything else on the machine: anything but noise here skews the figures.
    pub other: f64,
    pub registry: f64,
    pub dispatch: f64,
    pub gateway: f64,
    pub redis: f64,
    pub bench: f64,
    pub wall: f64,
}

impl Pids {
    pub fn sample(&self, at: Instant) -> (Instant, Cpu) {
        let c = |pid: u32| cpu_seconds(pid).unwrap_or(0.0);
        (
            at,
            Cpu {
                registry: c(self.registry),
                dispatch: self.dispatch.iter().copied().map(c).sum(),
                gateway: c(self.gateway),
                redis: self.redis.iter().copied().map(c).sum(),
                bench: c(self.bench),
                other: machine_busy_seconds(),
                wall: 0.0,
            },
        )
    }

    pub fn since(&self, (at, before): (Instant, Cpu)) -> Cpu {
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

    /// Resident memory of every dispatcher together, in KiB.
    pub fn dispatch_rss_kib(&self) -> u64 {
        self.dispatch.iter().filter_map(|pid| vm_rss_kib(*pid)).sum()
    }
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The machine, the tools' versions, and `setup` (how Redis and the
/// services run).
pub fn machine_info(setup: &str) -> String {
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
        "- CPU: {model}, nproc {nproc}\n- memory: {:.1} GiB\n- kernel: {}\n- {}\n- {}\n- setup: {setup}\n",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        version("redis-server", "--version"),
        version("wrk", "--version"),
    )
}
