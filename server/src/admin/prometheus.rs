//! The server's counts in the Prometheus text format (version 0.0.4).

use std::{fmt::Write, sync::atomic::Ordering};

use crate::{
    handle::TunnelReport,
    metrics::{Metrics, DURATION_BUCKETS, REGISTRATION_REFUSALS, REQUEST_REFUSALS},
    Control,
};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric, with its help and type lines.
pub(super) async fn render(control: &Control) -> String {
    let tunnels = control.registry.report().await;
    let mut out = String::with_capacity(2048 + tunnels.len() * 512);
    let gauge = |n: usize| vec![format!(" {n}")];
    let help = "Hosts held by clients (or kept for one reconnecting).";
    family(
        &mut out,
        "burrow_tunnels",
        "gauge",
        help,
        gauge(tunnels.len()),
    );
    let help = "Client connections open.";
    family(
        &mut out,
        "burrow_sessions",
        "gauge",
        help,
        gauge(control.sessions()),
    );
    per_host(&mut out, &tunnels);
    counts(&mut out, &control.metrics);
    if control.cluster.is_some() {
        cluster(&mut out, &control.metrics);
    }
    out
}

/// The metrics labelled by host.
fn per_host(out: &mut String, tunnels: &[TunnelReport]) {
    let mut requests = Vec::new();
    let mut bytes = Vec::new();
    let mut in_flight = Vec::new();
    for t in tunnels {
        let host = label(&t.host);
        for (class, n) in CLASSES.iter().zip(t.stats.classes()) {
            requests.push(format!("{{host=\"{host}\",class=\"{class}\"}} {n}"));
        }
        for (direction, n) in [("in", t.stats.bytes_in()), ("out", t.stats.bytes_out())] {
            bytes.push(format!("{{host=\"{host}\",direction=\"{direction}\"}} {n}"));
        }
        in_flight.push(format!("{{host=\"{host}\"}} {}", t.in_flight));
    }
    let help = "Requests answered, by host and status class.";
    family(out, "burrow_requests_total", "counter", help, requests);
    let help = "Body bytes by host: in from callers, out to them.";
    family(out, "burrow_bytes_total", "counter", help, bytes);
    let help = "Requests and streams in flight, by host.";
    family(out, "burrow_streams_in_flight", "gauge", help, in_flight);
}

/// The server-wide counts: durations, reconnects, refusals.
fn counts(out: &mut String, m: &Metrics) {
    let (buckets, sum) = m.durations();
    let bounds = DURATION_BUCKETS.iter().map(|b| b.to_string());
    let mut histogram: Vec<String> = bounds
        .chain(["+Inf".to_owned()])
        .zip(&buckets)
        .map(|(le, n)| format!("_bucket{{le=\"{le}\"}} {n}"))
        .collect();
    histogram.push(format!("_sum {sum}"));
    histogram.push(format!("_count {}", buckets.last().copied().unwrap_or(0)));
    let help = "Time from a request's arrival to its response head.";
    family(
        out,
        "burrow_request_duration_seconds",
        "histogram",
        help,
        histogram,
    );
    let reconnects = vec![format!(" {}", m.reconnects.load(Ordering::Relaxed))];
    let help = "Hosts taken back by their client within the reconnect grace.";
    family(out, "burrow_reconnects_total", "counter", help, reconnects);
    let requests = REQUEST_REFUSALS.iter().zip(m.request_refusals());
    let registrations = REGISTRATION_REFUSALS.iter().zip(m.registration_refusals());
    let refusals = requests
        .map(|(r, n)| format!("{{stage=\"request\",reason=\"{r}\"}} {n}"))
        .chain(registrations.map(|(r, n)| format!("{{stage=\"registration\",reason=\"{r}\"}} {n}")))
        .collect();
    let help = "Requests and registrations the server turned away, by reason.";
    family(out, "burrow_refusals_total", "counter", help, refusals);
}

/// A cluster node's counts: requests between the nodes, the directory.
fn cluster(out: &mut String, m: &Metrics) {
    let c = &m.cluster;
    let n = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let families = [
        (
            "burrow_cluster_forwarded_total",
            "Requests forwarded to the node holding their tunnel (out), or from another node (in).",
            vec![
                format!("{{direction=\"out\"}} {}", n(&c.forwarded_out)),
                format!("{{direction=\"in\"}} {}", n(&c.forwarded_in)),
            ],
        ),
        (
            "burrow_cluster_lease_operations_total",
            "Leases claimed, renewed and released in the host directory.",
            vec![format!(" {}", n(&c.lease_operations))],
        ),
        (
            "burrow_cluster_directory_errors_total",
            "Calls to the host directory (Redis) that failed.",
            vec![format!(" {}", n(&c.directory_errors))],
        ),
    ];
    for (name, help, samples) in families {
        family(out, name, "counter", help, samples);
    }
}

/// One metric family: its help and type, then each sample (`{labels} value`
/// or ` value`).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<String>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for sample in samples {
        let _ = writeln!(out, "{name}{sample}");
    }
}

/// A label value, escaped as the format asks (host names never hold these,
/// but a label must not be able to break a line).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
