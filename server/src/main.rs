use std::{net::TcpListener, path::PathBuf};

use anyhow::Context;
use burrow_server::ServerConfig;
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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
    let mut config = ServerConfig::from_file(&args.config)?;
    config
        .apply_port_env(std::env::var("PORT").ok().as_deref())
        .map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    actix_web::rt::System::new().block_on(async move {
        let server = burrow_server::start(listener, config)?;
        shutdown_signal().await;
        log::info!("shutting down");
        server.stop().await;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = actix_web::rt::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = actix_web::rt::signal::ctrl_c().await;
}
