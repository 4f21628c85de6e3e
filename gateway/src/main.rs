//! `herald-gateway`: configuration from the environment, then the REST API
//! until SIGTERM. `--dev` runs without `HERALD_SECRET_KEY`.

use std::process::ExitCode;

use herald_common::shutdown;
use herald_common::startup::{self, exit_code, listen};

/// Requests and deliveries allocate many small, short-lived buffers across
/// threads; mimalloc serves them from thread-local pages where glibc's
/// malloc contends and fragments (about a fifth of the dispatcher's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    exit_code("herald-gateway", serve().await)
}

async fn serve() -> anyhow::Result<()> {
    let started = startup::start("herald-gateway")?;
    let config = started.config;
    if config.admin_token.is_none() {
        tracing::warn!("HERALD_ADMIN_TOKEN is not set: admin REST calls are refused");
    }
    let listener = listen("HERALD_GATEWAY_LISTEN", config.gateway_listen).await?;
    herald_gateway::run(config, listener, shutdown::on_signal()).await?;
    Ok(())
}
