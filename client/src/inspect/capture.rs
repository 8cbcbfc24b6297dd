//! A kept exchange as JSON: the summary the list shows, and the detail,
//! which is also the saved-capture file format `burrow replay` reads back.
//!
//! ```json
//! {"id": 7, "method": "POST", "path": "/hook", "status": 200,
//!  "duration_ms": 1.42, "tunnel": "app.example.com", "started": "2026-...Z",
//!  "local": "http://localhost:3000", "replay_of": null, "error": null,
//!  "websocket": false, "timings": {"sent_ms": 0.1, "head_ms": 1.1, "done_ms": 1.42},
//!  "request": {"headers": [["content-type", "application/json"]],
//!              "body": {"size": 17, "captured": 17, "encoding": "utf8", "data": "{...}"}},
//!  "response": {"headers": [...], "body": {...}}}
//! ```
//!
//! Header fields are `[name, value]` pairs in order (a name may repeat);
//! a body is `utf8` text when it is valid UTF-8, else `base64`. An
//! upgraded WebSocket adds `messages` (`{direction: "in"|"out", at_ms,
//! kind, compressed, payload}`, `in` being from the caller) and
//! `messages_dropped`.

use std::time::{Duration, UNIX_EPOCH};

use base64::{engine::general_purpose::STANDARD, Engine};
use burrow_common::protocol::HeaderList;
use bytes::Bytes;
use serde_json::{json, Value};

use super::store::Record;
use crate::observe::{ws::WsMessage, BodyCapture, Fields};

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// When a record started, as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn started(r: &Record) -> String {
    let since = r.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = crate::request_log::sink::utc(since.as_secs());
    let text = String::from_utf8_lossy(&secs[..19]).into_owned();
    format!("{text}.{:03}Z", since.subsec_millis())
}

/// What the list shows of a record.
pub fn summary(r: &Record) -> Value {
    let e = &r.exchange;
    json!({
        "id": r.id,
        "method": e.method,
        "path": e.uri,
        "status": e.status,
        "duration_ms": ms(e.elapsed),
        "tunnel": e.host,
        "started": started(r),
        "replay_of": r.replay_of,
        "error": e.failure.as_ref().map(|f| f.reason.clone()),
        "websocket": e.upgrade,
        "request_size": e.request_body.total,
        "response_size": e.response_body.total,
    })
}

/// Everything kept of a record.
pub fn detail(r: &Record) -> Value {
    let e = &r.exchange;
    let mut value = summary(r);
    if let Value::Object(map) = &mut value {
        map.insert("local".into(), json!(&*r.local));
        map.insert(
            "timings".into(),
            json!({
                "sent_ms": e.sent_after.map(ms),
                "head_ms": e.head_after.map(ms),
                "done_ms": ms(e.elapsed),
            }),
        );
        map.insert(
            "request".into(),
            json!({"headers": fields(&e.request_headers), "body": body(&e.request_body)}),
        );
        map.insert(
            "response".into(),
            json!({"headers": fields(&e.response_headers), "body": body(&e.response_body)}),
        );
        if e.upgrade {
            let messages: Vec<Value> = e.messages.iter().map(message).collect();
            map.insert("messages".into(), Value::Array(messages));
            map.insert("messages_dropped".into(), json!(e.messages_dropped));
        }
    }
    value
}

/// A WebSocket message: `in` from the caller to the local service, `out`
/// back; its payload as a body is.
fn message(m: &WsMessage) -> Value {
    let payload = body(&BodyCapture {
        bytes: m.data.clone(),
        total: m.size,
    });
    json!({
        "direction": if m.from_caller { "in" } else { "out" },
        "at_ms": ms(m.at),
        "kind": m.kind.name(),
        "compressed": m.compressed,
        "payload": payload,
    })
}

/// Header fields as `[name, value]` pairs.
pub fn fields(list: &Fields) -> Value {
    let pairs = list
        .iter()
        .map(|(n, v)| json!([String::from_utf8_lossy(n), String::from_utf8_lossy(v)]));
    Value::Array(pairs.collect())
}

/// A body as far as it was captured.
pub fn body(b: &BodyCapture) -> Value {
    let (encoding, data) = match std::str::from_utf8(&b.bytes) {
        Ok(text) => ("utf8", text.to_owned()),
        Err(_) => ("base64", STANDARD.encode(&b.bytes)),
    };
    json!({"size": b.total, "captured": b.bytes.len(), "encoding": encoding, "data": data})
}

/// A request as read back from a capture or an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRequest {
    /// The method.
    pub method: String,
    /// The target: path and query.
    pub path: String,
    /// The public host it was sent to, when known.
    pub host: Option<String>,
    /// The local service it went to, when known.
    pub local: Option<String>,
    /// The header fields.
    pub headers: HeaderList,
    /// The body (empty when there was none).
    pub body: Bytes,
    /// Bytes of the original body that were not captured.
    pub missing: u64,
}

/// The request of a capture in the detail form.
pub fn request_of(capture: &Value) -> Result<SavedRequest, String> {
    let text = |key: &str| capture.get(key).and_then(Value::as_str).map(str::to_owned);
    let method = text("method").ok_or("a capture needs a `method`")?;
    let path = text("path").ok_or("a capture needs a `path`")?;
    let request = capture.get("request").cloned().unwrap_or(Value::Null);
    let headers = match request.get("headers") {
        Some(h) => parse_fields(h)?,
        None => HeaderList::new(),
    };
    let (body, missing) = match request.get("body") {
        Some(b) if !b.is_null() => parse_body(b)?,
        _ => (Bytes::new(), 0),
    };
    Ok(SavedRequest {
        method,
        path,
        host: text("tunnel"),
        local: text("local"),
        headers,
        body,
        missing,
    })
}

/// Header fields as `[[name, value], ...]` or `{"name": "value", ...}`.
pub fn parse_fields(value: &Value) -> Result<HeaderList, String> {
    let pair = |n: &str, v: &Value| -> Result<(Bytes, Bytes), String> {
        let v = v
            .as_str()
            .ok_or_else(|| format!("the value of header `{n}` must be a string"))?;
        Ok((Bytes::from(n.to_owned()), Bytes::from(v.to_owned())))
    };
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(n), v]) => pair(n, v),
                _ => Err("headers must be [name, value] pairs".to_owned()),
            })
            .collect(),
        Value::Object(map) => map.iter().map(|(n, v)| pair(n, v)).collect(),
        _ => Err("headers must be a list of [name, value] pairs or an object".into()),
    }
}

/// A body as `{"encoding", "data", "size"}`, or a plain string; the bytes
/// and how many of the original were not captured.
pub fn parse_body(value: &Value) -> Result<(Bytes, u64), String> {
    if let Some(text) = value.as_str() {
        return Ok((Bytes::from(text.to_owned()), 0));
    }
    let data = value.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = match value.get("encoding").and_then(Value::as_str) {
        None | Some("utf8") => Bytes::from(data.to_owned()),
        Some("base64") => Bytes::from(
            STANDARD
                .decode(data)
                .map_err(|e| format!("the body's base64 is invalid: {e}"))?,
        ),
        Some(other) => return Err(format!("unknown body encoding `{other}`")),
    };
    let size = value.get("size").and_then(Value::as_u64).unwrap_or(0);
    Ok((bytes.clone(), size.saturating_sub(bytes.len() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Exchange;

    #[test]
    fn a_detail_reads_back_as_the_request_it_recorded() {
        let mut e = Exchange::new_for("a.localhost", "POST", "/hook?x=1");
        e.request_headers = Fields::of(&vec![
            (Bytes::from_static(b"x-a"), Bytes::from_static(b"1")),
            (Bytes::from_static(b"x-a"), Bytes::from_static(b"2")),
        ]);
        e.request_body = BodyCapture {
            bytes: vec![0, 159, 146, 150],
            total: 4,
        };
        e.status = Some(201);
        let record = Record {
            id: 3,
            at: UNIX_EPOCH + Duration::from_millis(1_796_397_107_250),
            replay_of: None,
            local: "http://localhost:3000".into(),
            exchange: std::sync::Arc::new(e),
        };
        let value = detail(&record);
        assert_eq!(value["started"], "2026-12-04T15:11:47.250Z");
        assert_eq!(value["request"]["body"]["encoding"], "base64");
        let text = serde_json::to_string(&value).unwrap_or_default();
        let back: Value = serde_json::from_str(&text).unwrap_or_default();
        let saved = request_of(&back).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(saved.method, "POST");
        assert_eq!(saved.path, "/hook?x=1");
        assert_eq!(saved.headers, record.exchange.request_headers.to_list());
        assert_eq!(&saved.body[..], &[0, 159, 146, 150]);
        assert_eq!(saved.missing, 0);
        assert_eq!(saved.local.as_deref(), Some("http://localhost:3000"));
    }
}
