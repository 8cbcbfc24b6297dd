//! The `burrow` binary: the client, and `burrow demo`.

mod demo;
mod http;
mod replay;
mod screen;
mod serve;
mod signals;

use std::path::PathBuf;

use burrow_client::ClientConfig;
use clap::{Parser, Subcommand};

/// mimalloc (the workspace sets its version for both binaries): the
/// request path allocates many small, short-lived objects, which it serves
/// markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The local side of burrow: serves local HTTP services on public hosts of a
/// burrow-server.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file [default: config/client.toml].
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Plain log lines on standard error, not the live screen a terminal
    /// gets.
    #[arg(long, global = true)]
    log: bool,
    /// Where the request inspector listens (HOST:PORT or a port), or `off`
    /// [default: `inspect` in the configuration file, else 127.0.0.1:4040,
    /// or the next free port after it].
    #[arg(long, global = true, value_name = "ADDR|off")]
    inspect: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serves a local service on a public host, with no configuration
    /// file: `burrow http 3000`.
    Http(http::HttpArgs),
    /// Saves the server and token `burrow http` uses, in a file only you
    /// can read.
    Login(http::LoginArgs),
    /// Sends saved requests (the inspector's JSON of one, or a HAR file) to
    /// a local service again: `burrow replay hook.json --expect 2xx`.
    Replay(replay::ReplayArgs),
    /// Runs the whole tunnel on this machine: a burrow-server from
    /// config/server.toml, this client, and a demo page if nothing listens
    /// on the local port.
    Demo {
        /// Server configuration file.
        #[arg(long, default_value = "config/server.toml")]
        server_config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // The screen is for the client's own commands, on a terminal.
    let own = matches!(args.command, None | Some(Command::Http(_)));
    let screen = (own && screen::wanted(args.log)).then(|| screen::state::Shared::new(Vec::new()));
    // Without RUST_LOG: the client's own lines, not the start-up chatter of
    // the HTTP server that `burrow demo` serves its page with.
    let quiet = "info,actix_server=warn";
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(quiet));
    if let Some(state) = &screen {
        // The screen covers standard error: its lines are shown on it.
        let lines = screen::state::LogLines::new(state.clone());
        logger.target(env_logger::Target::Pipe(Box::new(lines)));
    }
    logger.init();
    let config = args.config.as_deref();
    let or_default = || config.unwrap_or(std::path::Path::new(http::DEFAULT_CONFIG));
    let inspect = args.inspect.as_deref();
    let result = match args.command {
        None => run_client(or_default(), inspect, screen),
        Some(Command::Http(quick)) => http::run(quick, config, inspect, screen),
        Some(Command::Login(login)) => http::login(login),
        Some(Command::Replay(replay)) => match replay::run(replay) {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Some(Command::Demo { server_config }) => demo::run(or_default(), &server_config, inspect),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burrow: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_client(
    path: &std::path::Path,
    inspect: Option<&str>,
    screen: Option<screen::state::Shared>,
) -> anyhow::Result<()> {
    let config = ClientConfig::from_file(path).map_err(|e| anyhow::anyhow!(e.with_way_out()))?;
    let config = serve::inspecting(config, inspect)?;
    serve::serve(config, serve::Tell::Log, false, screen)
}
