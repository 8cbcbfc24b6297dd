//! The markdown table the benchmark prints.

use std::{collections::BTreeMap, fmt::Write as _};

#[derive(Default)]
pub struct Table {
    rows: Vec<String>,
    cells: BTreeMap<(String, String), String>,
}

impl Table {
    pub fn set(&mut self, row: &str, col: &str, value: Option<String>) {
        if !self.rows.iter().any(|r| r == row) {
            self.rows.push(row.to_owned());
        }
        if let Some(v) = value {
            self.cells.insert((row.to_owned(), col.to_owned()), v);
        }
    }

    pub fn render(&self, cols: &[&str]) -> String {
        let mut out = String::from("| figure |");
        for c in cols {
            let _ = write!(out, " {c} |");
        }
        out.push_str("\n|---|");
        for _ in cols {
            out.push_str("---:|");
        }
        for r in &self.rows {
            let _ = write!(out, "\n| {r} |");
            for c in cols {
                let v = self
                    .cells
                    .get(&(r.clone(), c.to_string()))
                    .map_or("n/a", String::as_str);
                let _ = write!(out, " {v} |");
            }
        }
        out
    }
}

/// A server + client pair of memory readings in KiB, as a cell in MiB.
pub fn mib_pair((server, client): (u64, u64)) -> String {
    format!("{:.1} + {:.1}", mib(server), mib(client))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
