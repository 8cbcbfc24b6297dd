//! One frame of the screen: the connection, the tunnels, the counts and
//! latencies, the latest requests and the latest log lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::{
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Row, Table},
    Frame,
};

use super::state::{Link, State};

/// Draws `s` over the whole frame.
pub fn frame(f: &mut Frame<'_>, s: &State) {
    let head_rows = 3 + s.tunnels.len().max(1) as u16 + u16::from(s.inspector.is_some());
    let [head, requests, log, foot] = Layout::vertical([
        Constraint::Length(head_rows),
        Constraint::Min(3),
        Constraint::Length(6),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(summary(s)), head);
    f.render_widget(recent(s), requests);
    let lines: Vec<Line<'_>> = s
        .log
        .iter()
        .rev()
        .take(log.height.saturating_sub(1) as usize)
        .rev()
        .map(|l| Line::raw(l.as_str()))
        .collect();
    let block = Block::default().borders(Borders::TOP).title(" Log ");
    f.render_widget(Paragraph::new(lines).block(block), log);
    let hint = match s.link {
        Link::Stopping => "Stopping: finishing the requests in flight (Ctrl-C again to quit now)",
        _ => "Ctrl-C to stop",
    };
    f.render_widget(Paragraph::new(Span::styled(hint, dim())), foot);
}

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// The lines above the requests.
fn summary(s: &State) -> Vec<Line<'_>> {
    let (state, colour) = match &s.link {
        Link::Connecting => ("connecting".to_owned(), Color::Yellow),
        Link::Online => ("online".to_owned(), Color::Green),
        Link::Reconnecting(why) => (format!("reconnecting: {why}"), Color::Red),
        Link::Stopping => ("stopping".to_owned(), Color::Yellow),
    };
    let rtt = s
        .rtt
        .map_or(String::new(), |r| format!("   round trip {}", ms(r)));
    let mut lines = vec![Line::from(vec![
        Span::styled("burrow  ", bold()),
        Span::styled(state, Style::default().fg(colour)),
        Span::raw(rtt),
    ])];
    if s.tunnels.is_empty() {
        lines.push(Line::raw("Forwarding   (waiting for the server)"));
    }
    for (url, local) in &s.tunnels {
        lines.push(Line::from(vec![
            Span::raw("Forwarding   "),
            Span::styled(url.as_str(), bold()),
            Span::raw(format!(" -> {local}")),
        ]));
    }
    if let Some(url) = &s.inspector {
        lines.push(Line::from(vec![
            Span::raw("Inspector    "),
            Span::styled(url.as_str(), bold()),
        ]));
    }
    let percentiles = match (s.percentile(50), s.percentile(90), s.percentile(99)) {
        (Some(a), Some(b), Some(c)) => format!("   p50 {}  p90 {}  p99 {}", ms(a), ms(b), ms(c)),
        _ => String::new(),
    };
    let moving = match s.moving() {
        0 => String::new(),
        bytes => format!(" ({} so far)", size(bytes)),
    };
    lines.push(Line::raw(format!(
        "Requests     {} done, {} open{moving}{percentiles}",
        s.requests,
        s.open.len()
    )));
    let missed = match s.missed {
        0 => String::new(),
        n => format!("   ({n} requests came too fast to list)"),
    };
    lines.push(Line::raw(format!("Reconnects   {}{missed}", s.reconnects)));
    lines
}

/// The latest requests, newest first.
fn recent(s: &State) -> Table<'_> {
    let rows = s.recent.iter().map(|r| {
        let colour = match r.outcome.as_bytes().first() {
            Some(b'2') => Color::Green,
            Some(b'3') => Color::Cyan,
            Some(b'4') => Color::Yellow,
            _ => Color::Red,
        };
        Row::new(vec![
            Span::styled(clock(r.at), dim()),
            Span::raw(r.method.as_str()),
            Span::raw(r.path.as_str()),
            Span::styled(r.outcome.as_str(), Style::default().fg(colour)),
            Span::raw(ms(r.took)),
            Span::raw(size(r.size)),
        ])
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Min(10),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    Table::new(rows, widths)
        .header(Row::new(["time", "method", "path", "status", "took", "size"]).style(dim()))
        .block(Block::default().borders(Borders::TOP).title(" Requests "))
}

/// `hh:mm:ss`, UTC, as the log's times are.
fn clock(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

fn ms(d: Duration) -> String {
    match d.as_micros() {
        us if us < 10_000 => format!("{:.1} ms", us as f64 / 1000.0),
        us => format!("{} ms", us / 1000),
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}
