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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Prints the `token_sha256` line for a token, to put in a `[[hosts]]`
    /// entry in place of `token`. Reads the token from standard input
    /// when it is not given (so it stays out of the shell's history).
    HashToken {
        /// The token.
        token: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    // Without RUST_LOG: the server's own lines, not the HTTP server's start-up
    // chatter nor the parse errors any stranger's malformed request causes.
    let quiet = "info,actix_server=warn,actix_http::h1::dispatcher=off";
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(quiet)).init();
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::HashToken { token }) => hash_token(token.as_deref()),
        None => run(&args),
    };
    match result {
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
        let shutdown = shutdown_signal()?;
        let mut reloads = reload_signal()?;
        let server = burrow_server::start(listeners, config)?;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = reloads.recv() => {
                    let _ = server.control().reload_and_log().await;
                }
            }
        }
        log::info!("shutting down");
        server.stop().await;
        Ok(())
    })
}

/// SIGHUP, as a stream of reload requests (none where there is no SIGHUP).
fn reload_signal() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        actix_web::rt::spawn(async move {
            while hup.recv().await.is_some() {
                // A reload already waiting covers this one too.
                let _ = tx.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    drop(tx);
    Ok(rx)
}

fn hash_token(token: Option<&str>) -> anyhow::Result<()> {
    let token = match token {
        Some(t) => t.to_owned(),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the token from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(!token.is_empty(), "the token is empty");
    println!(
        "token_sha256 = \"{}\"",
        burrow_server::config::sha256_hex(&token)
    );
    Ok(())
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
