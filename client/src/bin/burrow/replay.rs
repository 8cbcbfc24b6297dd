//! `burrow replay FILE...`: saved captures (the inspector's detail JSON,
//! or every entry of a HAR file) sent to a local service as forwarding
//! sends them, each answer's status and time printed, and a non-zero exit
//! when one does not match `--expect`: a webhook captured once becomes a
//! test that runs without its sender.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context};
use burrow_client::{
    config::TunnelConfig,
    inspect::{capture, capture::SavedRequest, export, replay::replay},
    local::LocalLeg,
    observe::Capture,
};
use serde_json::Value;

/// `burrow replay`'s arguments.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Saved captures: the inspector's JSON of one request
    /// (`GET /api/requests/ID`), or a HAR file (every entry).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The local service to send them to (http://localhost:3000) [default:
    /// the one each capture went to].
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// The statuses that pass, comma-separated: 200, 2xx, 2xx,304. Any
    /// other answer (or none) makes the exit status 1.
    #[arg(long, value_name = "STATUSES")]
    expect: Option<String>,
    /// Take an https:// service's certificate without verifying it.
    #[arg(long)]
    insecure: bool,
}

/// The statuses `--expect` lets pass.
fn passes(expect: &str, status: u16) -> anyhow::Result<bool> {
    for part in expect.split(',').map(str::trim) {
        let ok = match part.as_bytes() {
            [c, b'x', b'x'] | [c, b'X', b'X'] if c.is_ascii_digit() => {
                status / 100 == u16::from(c - b'0')
            }
            _ => {
                status
                    == part.parse::<u16>().with_context(|| {
                        format!("--expect: `{part}` is not a status (200) or a class (2xx)")
                    })?
            }
        };
        if ok {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The requests a file holds.
fn requests_in(path: &PathBuf) -> anyhow::Result<Vec<SavedRequest>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let found = if value.get("log").is_some() {
        export::requests_of_har(&value)
    } else {
        capture::request_of(&value).map(|r| vec![r])
    };
    found.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Sends every saved request; `Ok(false)` when one did not pass.
pub fn run(args: ReplayArgs) -> anyhow::Result<bool> {
    if let Some(expect) = &args.expect {
        passes(expect, 200)?;
    }
    let mut all = Vec::new();
    for file in &args.files {
        all.extend(requests_in(file)?);
    }
    actix_rt::System::new().block_on(async {
        let mut passed = true;
        for saved in &all {
            let Some(to) = args.to.clone().or_else(|| saved.local.clone()) else {
                bail!("{} {}: the capture does not say which service it went to; give one with --to URL", saved.method, saved.path);
            };
            let tunnel = TunnelConfig::to_local(&to, !args.insecure).map_err(|e| anyhow::anyhow!("--to {to}: {e}"))?;
            passed &= send(saved, &tunnel, args.expect.as_deref()).await?;
        }
        Ok(passed)
    })
}

/// Sends one request and prints how it went; whether it passed.
async fn send(
    saved: &SavedRequest,
    tunnel: &TunnelConfig,
    expect: Option<&str>,
) -> anyhow::Result<bool> {
    let what = format!("{} {}", saved.method, saved.path);
    if saved.missing > 0 {
        println!(
            "{what} -> not sent: {} bytes of its body were not captured",
            saved.missing
        );
        return Ok(false);
    }
    let leg = LocalLeg::for_tunnels(std::slice::from_ref(tunnel));
    let capture = Capture {
        headers: false,
        body_bytes: 0,
        live: false,
    };
    let started = Instant::now();
    let result = replay(&leg, tunnel, saved, capture).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let (status, failure) = match &result {
        Ok(e) => (e.status, e.failure.as_ref().map(|f| f.reason.clone())),
        Err(why) => (None, Some(why.clone())),
    };
    let ok = match (status, &failure, expect) {
        (Some(s), None, Some(expect)) => passes(expect, s)?,
        (Some(_), None, None) => true,
        _ => false,
    };
    let verdict = match (ok, expect) {
        (false, Some(expect)) if failure.is_none() => format!("  (expected {expect})"),
        _ => String::new(),
    };
    match (status, failure) {
        (Some(s), None) => println!("{what} -> {s} in {took:.1} ms{verdict}"),
        (_, Some(why)) => println!("{what} -> failed: {why}"),
        (None, None) => println!("{what} -> no answer"),
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_classes_pass() {
        assert!(passes("2xx", 204).unwrap_or(false));
        assert!(!passes("2xx", 500).unwrap_or(true));
        assert!(passes("200, 304", 304).unwrap_or(false));
        assert!(passes("nope", 200).is_err());
    }
}
