//! Kept exchanges in other tools' forms: a request as a curl command, and
//! every exchange as HAR 1.2 (what browsers' developer tools import).

use crate::observe::Fields;
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};

use super::{capture, store::Record};
use crate::observe::BodyCapture;

/// `text` in single quotes for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The request of `r` as a curl command against `url` (its public URL).
pub fn curl(r: &Record, url: &str) -> String {
    let e = &r.exchange;
    let mut out = String::from("curl");
    if e.method != "GET" || !e.request_body.bytes.is_empty() {
        out += &format!(" -X {}", quote(&e.method));
    }
    out += &format!(" {}", quote(url));
    for (name, value) in &e.request_headers {
        let skip = [
            &b"host"[..],
            b"content-length",
            b"connection",
            b"transfer-encoding",
        ];
        if skip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            continue;
        }
        let field = format!(
            "{}: {}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(value)
        );
        out += &format!(" \\\n  -H {}", quote(&field));
    }
    let body = &e.request_body.bytes;
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => out += &format!(" \\\n  --data-binary {}", quote(text)),
            Err(_) => {
                let escaped: String = body.iter().map(|b| format!("\\{b:03o}")).collect();
                out = format!("printf '{escaped}' | {out} \\\n  --data-binary @-");
            }
        }
    }
    if e.request_body.total > body.len() as u64 {
        out += &format!(
            "\n# the body was captured in part: {} of {} bytes",
            body.len(),
            e.request_body.total
        );
    }
    out
}

fn pairs(list: &Fields) -> Vec<Value> {
    list.iter()
        .map(|(n, v)| {
            json!({"name": String::from_utf8_lossy(n), "value": String::from_utf8_lossy(v)})
        })
        .collect()
}

fn find<'a>(list: &'a Fields, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    list.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| String::from_utf8_lossy(v))
}

/// A body as HAR's `text`, base64 when it is not UTF-8.
fn content(body: &BodyCapture, mime: &str) -> Value {
    match std::str::from_utf8(&body.bytes) {
        Ok(text) => json!({"size": body.total, "mimeType": mime, "text": text}),
        Err(_) => json!({
            "size": body.total, "mimeType": mime,
            "text": STANDARD.encode(&body.bytes), "encoding": "base64",
        }),
    }
}

/// One record as a HAR entry; `url` is its public URL.
fn entry(r: &Record, url: &str) -> Value {
    let e = &r.exchange;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    // HAR's send, wait and receive: the request handed over, the answer's
    // head awaited, its body read.
    let head = e.head_after.map_or(ms(e.elapsed), ms);
    let send = e.sent_after.map_or(0.0, ms).min(head);
    let wait = head - send;
    let query: Vec<Value> = e
        .uri
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            json!({"name": n, "value": v})
        })
        .collect();
    let mut request = json!({
        "method": e.method, "url": url, "httpVersion": "HTTP/1.1", "cookies": [],
        "headers": pairs(&e.request_headers), "queryString": query,
        "headersSize": -1, "bodySize": e.request_body.total,
    });
    if e.request_body.total > 0 {
        let mime = find(&e.request_headers, "content-type").unwrap_or_default();
        let text = match std::str::from_utf8(&e.request_body.bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(&e.request_body.bytes).into_owned(),
        };
        request["postData"] = json!({"mimeType": mime, "text": text});
    }
    let mime = find(&e.response_headers, "content-type").unwrap_or_default();
    json!({
        "startedDateTime": capture::started(r),
        "time": ms(e.elapsed),
        "request": request,
        "response": {
            "status": e.status.unwrap_or(0), "statusText": "", "httpVersion": "HTTP/1.1",
            "cookies": [], "headers": pairs(&e.response_headers),
            "content": content(&e.response_body, &mime),
            "redirectURL": find(&e.response_headers, "location").unwrap_or_default(),
            "headersSize": -1, "bodySize": e.response_body.total,
        },
        "cache": {},
        "timings": {"send": send, "wait": wait, "receive": ms(e.elapsed) - head},
        "_burrowId": r.id,
    })
}

/// The records, oldest first, as a HAR 1.2 log; `url` gives each one's
/// public URL.
pub fn har<'a>(
    records: impl Iterator<Item = &'a Record>,
    url: impl Fn(&Record) -> String,
) -> Value {
    let entries: Vec<Value> = records.map(|r| entry(r, &url(r))).collect();
    json!({"log": {
        "version": "1.2",
        "creator": {"name": "burrow", "version": env!("CARGO_PKG_VERSION")},
        "entries": entries,
    }})
}

/// The requests of a HAR log's entries, as saved captures.
pub fn requests_of_har(har: &Value) -> Result<Vec<capture::SavedRequest>, String> {
    let entries = har
        .pointer("/log/entries")
        .and_then(Value::as_array)
        .ok_or("a HAR file needs log.entries")?;
    entries
        .iter()
        .map(|entry| {
            let request = entry.get("request").ok_or("a HAR entry needs a request")?;
            let url = request
                .get("url")
                .and_then(Value::as_str)
                .ok_or("a HAR request needs a url")?;
            let (host, path) = split_url(url);
            let headers = request
                .get("headers")
                .and_then(Value::as_array)
                .map(|h| {
                    h.iter()
                        .map(|f| {
                            let text =
                                |k| f.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                            (text("name").into(), text("value").into())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = request
                .pointer("/postData/text")
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok(capture::SavedRequest {
                method: request
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or("GET")
                    .to_owned(),
                path,
                host,
                local: None,
                headers,
                body: body.to_owned().into(),
                missing: 0,
            })
        })
        .collect()
}

/// A URL's host and its path with query.
fn split_url(url: &str) -> (Option<String>, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => (Some(rest[..i].to_owned()), rest[i..].to_owned()),
        None => (Some(rest.to_owned()), "/".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Exchange;
    use bytes::Bytes;

    #[test]
    fn curl_quotes_what_a_shell_would_split() {
        let mut e = Exchange::new_for("a.localhost", "POST", "/x");
        e.request_headers = Fields::of(&vec![
            (
                Bytes::from_static(b"host"),
                Bytes::from_static(b"a.localhost"),
            ),
            (Bytes::from_static(b"x-note"), Bytes::from_static(b"it's")),
        ]);
        e.request_body = BodyCapture {
            bytes: b"{\"a\": 'b'}".to_vec(),
            total: 10,
        };
        let r = Record {
            id: 1,
            at: std::time::SystemTime::now(),
            replay_of: None,
            local: "".into(),
            exchange: std::sync::Arc::new(e),
        };
        let cmd = curl(&r, "http://a.localhost:8080/x");
        assert_eq!(
            cmd,
            "curl -X 'POST' 'http://a.localhost:8080/x' \\\n  -H 'x-note: it'\\''s' \\\n  --data-binary '{\"a\": '\\''b'\\''}'"
        );
        let har = har(std::iter::once(&r), |_| {
            "http://a.localhost:8080/x?q=1".into()
        });
        let back = requests_of_har(&har).unwrap_or_default();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].path, "/x?q=1");
        assert_eq!(&back[0].body[..], b"{\"a\": 'b'}");
    }
}
