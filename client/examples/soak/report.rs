//! What the run found: each failure sorted into the fault it overlaps or
//! not, the markdown tables, and whether the run passed.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    cast::{Role, Usage},
    chaos::{Chaos, Fault, Injected},
    clock::{secs, Origin},
    table::Table,
    traffic::{Failure, Kind, Tally},
};

/// Failures printed in full, of each sort.
const SHOWN: usize = 10;

/// The failures, sorted.
struct Sorted<'a> {
    /// By status or error label.
    during_faults: BTreeMap<String, u64>,
    during_count: u64,
    otherwise: Vec<&'a Failure>,
    wrong: Vec<&'a Failure>,
}

fn sort<'a>(tally: &'a Tally, faults: &[Injected]) -> Sorted<'a> {
    let mut sorted = Sorted {
        during_faults: BTreeMap::new(),
        during_count: 0,
        otherwise: Vec::new(),
        wrong: Vec::new(),
    };
    for f in &tally.failures {
        // A wrong answer is never excused: a fault may cut an answer, and
        // that must show as an error, not as a short or changed success.
        if f.problem.wrong {
            sorted.wrong.push(f);
        } else if faults
            .iter()
            .any(|i| f.start <= i.window.1 && f.end >= i.window.0)
        {
            *sorted
                .during_faults
                .entry(f.problem.label.clone())
                .or_default() += 1;
            sorted.during_count += 1;
        } else {
            sorted.otherwise.push(f);
        }
    }
    sorted
}

/// Prints the tables and the failures that matter; true when the run
/// passed.
pub fn print(tally: &Tally, chaos: &Chaos, origin: &Origin) -> bool {
    let sorted = sort(tally, &chaos.faults);
    let mut counts = Table::default();
    counts_table(&mut counts, tally, &sorted, chaos);
    println!("\n{}\n", counts.render(&["count", "detail"]));
    let mut procs = Table::default();
    process_table(&mut procs, &chaos.figures);
    let cols: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
    println!("{}\n", procs.render(&cols));
    show("failed otherwise", &sorted.otherwise, origin);
    show("wrong bytes", &sorted.wrong, origin);
    for line in &chaos.crashes {
        println!("{line}");
    }
    let unrecovered = chaos.faults.iter().filter(|i| i.recovery.is_none()).count();
    let bad_exits = chaos
        .server_exits
        .iter()
        .filter(|(e, _)| e != "exit 0")
        .count();
    sorted.otherwise.is_empty()
        && sorted.wrong.is_empty()
        && chaos.crashes.is_empty()
        && unrecovered == 0
        && bad_exits == 0
}

fn counts_table(t: &mut Table, tally: &Tally, sorted: &Sorted, chaos: &Chaos) {
    let total = |m: &BTreeMap<Kind, u64>| m.values().sum::<u64>().to_string();
    let by_kind = |m: &BTreeMap<Kind, u64>| {
        m.iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    t.set("requests sent", "count", Some(total(&tally.sent)));
    t.set("requests sent", "detail", Some(by_kind(&tally.sent)));
    t.set("succeeded", "count", Some(total(&tally.ok)));
    t.set("succeeded", "detail", Some(by_kind(&tally.ok)));
    let during = "failed during injected faults (expected)";
    t.set(during, "count", Some(sorted.during_count.to_string()));
    t.set(during, "detail", Some(joined(&sorted.during_faults)));
    for (row, list) in [
        ("failed otherwise (must be 0)", &sorted.otherwise),
        ("wrong bytes (must be 0)", &sorted.wrong),
    ] {
        let mut kinds = BTreeMap::new();
        for f in list {
            *kinds.entry(f.kind).or_insert(0u64) += 1;
        }
        t.set(row, "count", Some(list.len().to_string()));
        t.set(row, "detail", Some(by_kind(&kinds)));
    }
    t.set(
        "faults injected",
        "count",
        Some(chaos.faults.len().to_string()),
    );
    t.set(
        "faults injected",
        "detail",
        Some(faults_detail(&chaos.faults)),
    );
    let mut exits: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for (how, took) in &chaos.server_exits {
        exits.entry(how).or_default().push(*took);
    }
    let exits = exits
        .iter()
        .map(|(how, took)| format!("{how}: {} (in {})", took.len(), span(took)));
    let row = "server after SIGTERM";
    t.set(row, "count", Some(chaos.server_exits.len().to_string()));
    t.set(row, "detail", Some(exits.collect::<Vec<_>>().join(", ")));
    let row = "processes that exited by themselves (must be 0)";
    t.set(row, "count", Some(chaos.crashes.len().to_string()));
    t.set(row, "detail", Some(String::new()));
}

/// `0.4-1.2 s`, or `0.4 s` for one.
fn span(times: &[Duration]) -> String {
    let lo = times.iter().min().copied().unwrap_or_default();
    let hi = times.iter().max().copied().unwrap_or_default();
    if lo == hi {
        format!("{} s", secs(lo))
    } else {
        format!("{}-{} s", secs(lo), secs(hi))
    }
}

/// `502: 12, connection refused: 3`.
fn joined(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each kind of fault, how often, and how long until the tunnel answered.
fn faults_detail(faults: &[Injected]) -> String {
    let mut by: BTreeMap<Fault, Vec<Option<Duration>>> = BTreeMap::new();
    for i in faults {
        by.entry(i.fault).or_default().push(i.recovery);
    }
    by.iter()
        .map(|(fault, times)| {
            let back: Vec<Duration> = times.iter().flatten().copied().collect();
            let range = if back.is_empty() {
                "never back".into()
            } else {
                format!("back in {}", span(&back))
            };
            let lost = times.len() - back.len();
            let lost = if lost > 0 {
                format!(", {lost} not back within 30 s")
            } else {
                String::new()
            };
            format!("{} {} ({range}{lost})", fault.name(), times.len())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn process_table(t: &mut Table, figures: &[(Role, crate::chaos::Figures)]) {
    let mib = |u: Option<Usage>| u.map(|u| format!("{:.1}", u.rss_kib as f64 / 1024.0));
    let fds = |u: Option<Usage>| u.map(|u| u.fds.to_string());
    for (role, f) in figures {
        let col = role.name();
        t.set("restarts", col, Some(f.restarts.to_string()));
        t.set(
            "age of the incarnation at the end (s)",
            col,
            Some(format!("{:.0}", f.age.as_secs_f64())),
        );
        t.set("RSS at start (MiB)", col, mib(f.start));
        t.set("RSS at end (MiB)", col, mib(f.end));
        t.set("highest RSS seen (MiB)", col, mib(Some(f.peak)));
        t.set("open fds at start", col, fds(f.start));
        t.set("open fds at end", col, fds(f.end));
        t.set("most open fds seen", col, fds(Some(f.peak)));
    }
}

/// The first few failures of one sort, in full.
fn show(what: &str, list: &[&Failure], origin: &Origin) {
    if list.is_empty() {
        return;
    }
    println!("{what}: {} (the first {SHOWN}):", list.len());
    for f in list.iter().take(SHOWN) {
        let status = f
            .problem
            .status
            .map_or("no status".into(), |s| s.to_string());
        println!(
            "  {} .. {}: {}: {} ({status}): {}",
            origin.show(f.start),
            origin.show(f.end),
            f.kind.name(),
            f.problem.label,
            f.problem.detail
        );
    }
    println!();
}
