//! What changed between two answers (an exchange and its replay): the
//! status, each header field whose values differ, and the body: JSON
//! compared by structure (each changed value with its path), text by
//! lines, anything else by its bytes.

use serde_json::{json, Map, Value};

use crate::observe::{Exchange, Fields};

/// Longest text compared line by line, in lines (a longer one is only
/// said to differ).
const MAX_LINES: usize = 2_000;

/// The differences between the answers of `old` and `new`.
pub fn answers(old: &Exchange, new: &Exchange) -> Value {
    json!({
        "status": (old.status != new.status).then(|| json!({"old": old.status, "new": new.status})),
        "headers": headers(&old.response_headers, &new.response_headers),
        "body": body(&old.response_body.bytes, &new.response_body.bytes),
        "same": old.status == new.status
            && old.response_body.bytes == new.response_body.bytes
            && headers(&old.response_headers, &new.response_headers).as_array().is_some_and(Vec::is_empty),
    })
}

/// The fields whose values differ, by name (lower case), with both lists.
fn headers(old: &Fields, new: &Fields) -> Value {
    let values = |list: &Fields, name: &str| -> Vec<String> {
        list.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    let mut names: Vec<String> = old
        .iter()
        .chain(new)
        .map(|(n, _)| String::from_utf8_lossy(n).to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let changed = names.into_iter().filter_map(|name| {
        let (a, b) = (values(old, &name), values(new, &name));
        (a != b).then(|| json!({"name": name, "old": a, "new": b}))
    });
    Value::Array(changed.collect())
}

/// How two bodies differ.
fn body(old: &[u8], new: &[u8]) -> Value {
    if old == new {
        return json!({"kind": "same"});
    }
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
    if let (Some(a), Some(b)) = (parse(old), parse(new)) {
        let mut changes = Vec::new();
        json_changes("", &a, &b, &mut changes);
        return json!({"kind": "json", "changes": changes});
    }
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(a), Ok(b)) => text(a, b),
        _ => json!({"kind": "bytes", "old_size": old.len(), "new_size": new.len()}),
    }
}

/// Each value that differs between `a` and `b`, by its JSON pointer.
fn json_changes(path: &str, a: &Value, b: &Value, out: &mut Vec<Value>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let here = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => json_changes(&here, u, v, out),
                    (u, v) => out.push(change(&here, u, v)),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let here = format!("{path}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(u), Some(v)) => json_changes(&here, u, v, out),
                    (u, v) => out.push(change(&here, u, v)),
                }
            }
        }
        (u, v) if u != v => out.push(change(path, Some(u), Some(v))),
        _ => {}
    }
}

fn change(path: &str, old: Option<&Value>, new: Option<&Value>) -> Value {
    let mut map = Map::new();
    map.insert("path".into(), json!(path));
    if let Some(old) = old {
        map.insert("old".into(), old.clone());
    }
    if let Some(new) = new {
        map.insert("new".into(), new.clone());
    }
    Value::Object(map)
}

/// A line diff: each line kept (` `), removed (`-`) or added (`+`), by the
/// longest common subsequence.
fn text(a: &str, b: &str) -> Value {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if x.len() > MAX_LINES || y.len() > MAX_LINES {
        return json!({"kind": "text", "lines": null});
    }
    // lcs[i][j]: the common lines of x[i..] and y[j..].
    let mut lcs = vec![vec![0u16; y.len() + 1]; x.len() + 1];
    for i in (0..x.len()).rev() {
        for j in (0..y.len()).rev() {
            lcs[i][j] = if x[i] == y[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::new());
    while i < x.len() || j < y.len() {
        if i < x.len() && j < y.len() && x[i] == y[j] {
            lines.push(json!([" ", x[i]]));
            (i, j) = (i + 1, j + 1);
        } else if j < y.len() && (i == x.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            lines.push(json!(["+", y[j]]));
            j += 1;
        } else {
            lines.push(json!(["-", x[i]]));
            i += 1;
        }
    }
    json!({"kind": "text", "lines": lines})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_compared_by_structure_and_text_by_lines() {
        let a = br#"{"b": 1, "a": {"x": [1, 2]}, "gone": true}"#;
        let b = br#"{"a": {"x": [1, 3]}, "b": 1, "new": "yes"}"#;
        let d = body(a, b);
        assert_eq!(d["kind"], "json");
        assert_eq!(
            d["changes"],
            json!([
                {"path": "/a/x/1", "old": 2, "new": 3},
                {"path": "/gone", "old": true},
                {"path": "/new", "new": "yes"},
            ])
        );
        let d = body(b"one\ntwo\nthree\n", b"one\n2\nthree\n");
        assert_eq!(
            d["lines"],
            json!([[" ", "one"], ["-", "two"], ["+", "2"], [" ", "three"]])
        );
        assert_eq!(body(b"\xff", b"\xfe")["kind"], "bytes");
        assert_eq!(body(b"x", b"x")["kind"], "same");
    }

    #[test]
    fn headers_differ_by_name_whatever_the_case() {
        let f = |n: &'static str, v: &'static str| (bytes::Bytes::from(n), bytes::Bytes::from(v));
        let old = [f("Content-Type", "text/plain"), f("x-a", "1")];
        let new = [
            f("content-type", "text/plain"),
            f("x-a", "2"),
            f("x-b", "3"),
        ];
        let d = headers(&Fields::of(&old.to_vec()), &Fields::of(&new.to_vec()));
        assert_eq!(
            d,
            json!([
                {"name": "x-a", "old": ["1"], "new": ["2"]},
                {"name": "x-b", "old": [], "new": ["3"]},
            ])
        );
    }
}
