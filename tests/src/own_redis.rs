//! A `redis-server` of one test alone, for tests that kill it or change
//! its configuration (`maxmemory`) and so must not share the process-wide
//! one.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A `redis-server` of this test alone, killed with SIGKILL and restarted
/// on the same port and directory.
pub struct OwnRedis {
    port: u16,
    dir: PathBuf,
    pub url: String,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("herald-fault-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut redis = OwnRedis { port, dir, url: format!("redis://127.0.0.1:{port}"), child: None };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        self.child = Some(crate::spawn_redis(self.port, &self.dir, &["--appendfsync", "always"]));
        crate::wait_for_redis(&self.url, Duration::from_secs(10));
    }

    /// The pid of redis-server itself (the harness starts it under a bash watchdog).
    fn server_pid(&self) -> Option<u32> {
        let client = redis::Client::open(self.url.as_str()).ok()?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
        info.lines().find_map(|l| l.strip_prefix("process_id:"))?.trim().parse().ok()
    }

    /// SIGKILL, as a crash: no shutdown save, only what the AOF holds survives.
    pub fn kill(&mut self) {
        let pid = self.server_pid().expect("the pid of redis-server");
        let status = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status().unwrap();
        assert!(status.success(), "kill -9 {pid} failed");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis on {} still answers after SIGKILL", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `CONFIG SET name value`, as an operator (or a full disk) would.
    pub fn config_set(&self, name: &str, value: &str) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query::<()>(&mut conn).unwrap();
    }

    pub fn restart(&mut self) {
        self.spawn();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Some(pid) = self.server_pid() {
                let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
