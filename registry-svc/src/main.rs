//! `herald-registry`: configuration from the environment, then the registry
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
    exit_code("herald-registry", serve().await)
}

async fn serve() -> anyhow::Result<()> {
    let started = startup::start("herald-registry")?;
    let config = started.config;
    let grpc = listen("HERALD_REGISTRY_LISTEN", config.registry_listen).await?;
    let admin = listen("HERALD_REGISTRY_ADMIN_LISTEN", config.registry_admin_listen).await?;
    herald_registry::run(config, grpc, admin, shutdown::on_signal()).await?;
    Ok(())
}
