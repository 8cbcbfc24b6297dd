//! `burrow http TARGET` (quick mode) and `burrow login`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burrow_client::{
    login,
    quick::{self, Known},
};
use burrow_common::Token;

use crate::{
    screen::state::Shared,
    serve::{serve, Tell},
};

/// Where the configuration file is looked for when `--config` names none.
pub const DEFAULT_CONFIG: &str = "config/client.toml";

/// `burrow http`'s arguments.
#[derive(clap::Args)]
pub struct HttpArgs {
    /// The local service: a port (3000, meaning http://localhost:3000),
    /// host:port, or a URL (https://localhost:8443).
    target: String,
    /// Public host name to serve it on (repeat for more); without one the
    /// server gives a random name.
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// The server: a host name (tunnel.example.com), or its control URL.
    /// Default: $BURROW_SERVER, the saved login, then the configuration
    /// file.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The token the server expects. Default: $BURROW_TOKEN, the saved
    /// login, then the configuration file.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// `burrow login`'s arguments.
#[derive(clap::Args)]
pub struct LoginArgs {
    /// The server: a host name (tunnel.example.com), or its control URL.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The token the server expects.
    #[arg(long, value_name = "TOKEN")]
    token: String,
}

/// Serves `args.target` until stopped; `config` is `--config` if given.
pub fn run(
    args: HttpArgs,
    config: Option<&Path>,
    inspect: Option<&str>,
    screen: Option<Shared>,
) -> anyhow::Result<()> {
    let places = places(&args, config)?;
    let config = quick::config(&args.target, &args.hosts, &places)?;
    let config = crate::serve::inspecting(config, inspect)?;
    serve(config, Tell::Stdout, true, screen)
}

/// Saves the server and token `burrow http` uses by default.
pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let server = quick::server_url(&args.server)?;
    if args.token.is_empty() {
        anyhow::bail!("--token must not be empty");
    }
    let path = login::save(&server, &Token::new(args.token))?;
    println!(
        "Saved: `burrow http PORT` now uses {server} and this token ({}, readable by you only).",
        path.display()
    );
    Ok(())
}

/// What the command line, the environment, the saved login and the
/// configuration file each say, in that order.
fn places(args: &HttpArgs, config: Option<&Path>) -> anyhow::Result<Vec<Known>> {
    let flags = Known {
        server: args.server.clone(),
        token: args.token.clone().map(Token::new),
        ..Known::default()
    };
    let mut places = vec![flags, Known::from_env()];
    places.extend(login::read()?);
    let file = match config {
        Some(path) => Some(Known::from_file(path).map_err(|e| anyhow::anyhow!(e.with_way_out()))?),
        // The default file is only a fallback: its absence is no error.
        None => {
            let path = PathBuf::from(DEFAULT_CONFIG);
            match path.exists() {
                true => Some(Known::from_file(&path).context("reading the default configuration")?),
                false => None,
            }
        }
    };
    places.extend(file);
    Ok(places)
}
