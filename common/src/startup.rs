//! What every service binary does before its `run`: read `--dev`, read and
//! validate the configuration, install telemetry, and bind listeners with
//! errors that name the variable to fix.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::config::{Env, HeraldConfig};
use crate::telemetry::{self, TelemetryGuard};
use crate::{CommonError, Result};

/// A configured, instrumented process, ready to bind and run.
pub struct Started {
    pub config: HeraldConfig,
    /// Flushes traces when dropped: keep it alive until `run` returns.
    pub telemetry: TelemetryGuard,
}

/// Reads the command line (only `--dev`) and the environment, and installs telemetry.
pub fn start(service: &'static str) -> Result<Started> {
    let mut dev = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--dev" => dev = true,
            other => return Err(CommonError::Config(format!("unknown argument {other:?} (the only flag is --dev)"))),
        }
    }
    let env = Env::from_process();
    let config = HeraldConfig::from_env(&env, dev)?;
    let telemetry = telemetry::init(service, &env)?;
    if dev {
        tracing::warn!("running with --dev: stored secrets use an ephemeral key and do not survive a restart");
    }
    Ok(Started { config, telemetry })
}

/// Binds `addr`, naming `variable` when that fails.
pub async fn listen(variable: &str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| CommonError::Config(format!("cannot listen on {variable}={addr}: {e}")))
}

/// The process exit code for a service's outcome, reporting a failure on stderr.
pub fn exit_code<E: std::fmt::Display>(service: &str, outcome: std::result::Result<(), E>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: {e}");
            ExitCode::FAILURE
        }
    }
}
