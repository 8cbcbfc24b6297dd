use std::path::PathBuf;

use anyhow::Context;
use burrow_server::ServerConfig;
/// mimalloc (the workspace sets its version for both binaries): the
/// request path allocates many small, short-lived objects, which it serves
/// markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

/// The public side of burrow: forwards HTTP requests for registered hosts
/// through WebSocket tunnels to `burrow` clients.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "config/server.toml")]
    config: PathBuf,
}

fn main() -> std::process::ExitCode {
    // Without RUST_LOG: the server's own lines, not the HTTP server's start-up
    // chatter nor the parse errors any stranger's malformed request causes.
    let quiet = "info,actix_server=warn,actix_http::h1::dispatcher=off";
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(quiet)).init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burrow-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let mut config =
        ServerConfig::from_file(&args.config).map_err(|e| anyhow::anyhow!(e.with_way_out()))?;
    config
        .apply_port_env(std::env::var("PORT").ok().as_deref())
        .map_err(anyhow::Error::msg)?;
    let listeners = burrow_server::listener::bind(&config)?;
    actix_web::rt::System::new().block_on(async move {
        // Listen for signals before announcing the server, so a SIGTERM sent
        // as soon as it is up still stops it gracefully.
        let signal = shutdown_signal()?;
        burrow_server::run(listeners, config, signal).await?;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM; the handlers are installed at once.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?
    };
    let ctrl_c = actix_web::rt::signal::ctrl_c();
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    })
}
