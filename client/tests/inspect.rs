//! The request inspector through a real tunnel: the real server and client
//! binaries, a real local service, and the inspector's JSON API read and
//! driven as its page does: the list, a capture whole, a replay with edits
//! that reaches the local service and its differences, curl, HAR, the
//! event stream, clearing, the ring's bounds, a WebSocket's messages, the
//! guard against other origins, and `burrow replay` with `--expect`.

mod support;

use std::time::Duration;

use awc::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{inspected::*, HOST};

const POSTED: &str = r#"{"n": 1, "list": [1, 2], "note": "it's"}"#;

#[actix_rt::test]
async fn the_api_lists_shows_replays_and_exports_what_passed() {
    use awc::http::Method;
    let t = Inspected::start("api").await;
    let resp = t.call(Method::GET, "/id/7?x=1").send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut resp = t
        .call(Method::POST, "/hook")
        .insert_header(("content-type", "application/json"))
        .send_body(POSTED)
        .await
        .expect("post");
    assert_eq!(resp.body().await.expect("body"), POSTED.as_bytes());
    let resp = t
        .call(Method::GET, "/status/404")
        .send()
        .await
        .expect("404");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // The list: newest first, each with what a row needs.
    let list = t.list_of(3).await;
    let paths: Vec<&str> = list.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(paths, ["/status/404", "/hook", "/id/7?x=1"]);
    for r in &list {
        for key in ["id", "method", "status", "duration_ms", "tunnel", "started"] {
            assert!(!r[key].is_null(), "{key} in {r}");
        }
        assert_eq!(r["tunnel"], HOST);
    }
    assert_eq!(list[0]["status"], 404);

    // One whole: headers and bodies both ways.
    let id = list[1]["id"].as_u64().expect("id");
    let hook = t.json(&format!("/api/requests/{id}")).await;
    assert_eq!(hook["request"]["body"]["data"], POSTED);
    assert_eq!(hook["response"]["body"]["data"], POSTED);
    assert_eq!(hook["response"]["body"]["size"], POSTED.len());
    let has = |fields: &Value, name: &str, value: &str| {
        fields
            .as_array()
            .is_some_and(|f| f.iter().any(|p| p[0] == name && p[1] == value))
    };
    assert!(
        has(
            &hook["request"]["headers"],
            "content-type",
            "application/json"
        ),
        "{hook}"
    );
    assert!(
        has(&hook["response"]["headers"], "x-echo-method", "POST"),
        "{hook}"
    );
    let timing = |k: &str| hook["timings"][k].as_f64().unwrap_or(-1.0);
    assert!(
        0.0 <= timing("sent_ms")
            && timing("sent_ms") <= timing("head_ms")
            && timing("head_ms") <= timing("done_ms"),
        "{hook}"
    );
    assert_eq!(hook["local"], t.upstream.url());

    // Replayed with edits: the local service gets the edited request.
    let mut headers = hook["request"]["headers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    headers.push(json!(["x-edited", "yes"]));
    let edited = r#"{"n": 2, "list": [1, 3], "note": "it's"}"#;
    let edits = json!({"path": "/hook?again=1", "headers": headers, "body": edited});
    let mut resp = t
        .api(Method::POST, &format!("/api/requests/{id}/replay"))
        .send_json(&edits)
        .await
        .expect("replay");
    assert_eq!(resp.status(), StatusCode::OK);
    let replay: Value = resp.json().await.expect("replay json");
    assert_eq!(replay["replay_of"], id);
    assert_eq!(replay["status"], 200);
    assert_eq!(replay["response"]["body"]["data"], edited);
    assert!(
        has(
            &replay["response"]["headers"],
            "x-echo-uri",
            "/hook?again=1"
        ),
        "{replay}"
    );
    let names = replay["response"]["headers"]
        .as_array()
        .and_then(|f| f.iter().find(|p| p[0] == "x-echo-names"))
        .map(|p| p[1].to_string())
        .unwrap_or_default();
    assert!(names.contains("x-edited"), "{names}");
    assert!(
        has(
            &replay["response"]["headers"],
            "x-echo-cl",
            &edited.len().to_string()
        ),
        "{replay}"
    );
    let new = replay["id"].as_u64().expect("new id");
    assert_eq!(t.list_of(4).await[0]["id"], new);

    // Its differences: the JSON by structure.
    let diff = t.json(&format!("/api/requests/{id}/diff?with={new}")).await;
    assert_eq!(diff["status"], Value::Null);
    assert_eq!(diff["body"]["kind"], "json");
    assert_eq!(
        diff["body"]["changes"],
        json!([{"path": "/list/1", "old": 2, "new": 3}, {"path": "/n", "old": 1, "new": 2}])
    );
    let changed: Vec<&str> = diff["headers"]
        .as_array()
        .map(|h| h.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        changed.contains(&"x-echo-uri") && !changed.contains(&"content-type"),
        "{changed:?}"
    );

    // As is, a replay repeats the request.
    let mut resp = t
        .api(Method::POST, &format!("/api/requests/{id}/replay"))
        .send()
        .await
        .expect("replay");
    let again: Value = resp.json().await.expect("json");
    assert_eq!(again["response"]["body"]["data"], POSTED);

    // curl and HAR.
    let mut resp = t
        .api(Method::GET, &format!("/api/requests/{id}/curl"))
        .send()
        .await
        .expect("curl");
    let curl = String::from_utf8_lossy(&resp.body().await.expect("curl body")).into_owned();
    assert!(curl.starts_with("curl -X 'POST' 'http://"), "{curl}");
    assert!(
        curl.contains("/hook'")
            && curl.contains(r#"--data-binary '{"n": 1, "list": [1, 2], "note": "it'\''s"}'"#),
        "{curl}"
    );
    let har = t.json("/api/har").await;
    assert_eq!(har["log"]["version"], "1.2");
    let entries = har["log"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[1]["request"]["postData"]["text"], POSTED);
    assert_eq!(entries[1]["response"]["status"], 200);
    assert!(entries[0]["request"]["url"]
        .as_str()
        .is_some_and(|u| u.contains(HOST) && u.ends_with("/id/7?x=1")));

    // `burrow replay`: the capture file as a test.
    let file = t.home.join("hook.json");
    std::fs::write(&file, hook.to_string()).expect("write capture");
    let har_file = t.home.join("all.har");
    std::fs::write(&har_file, har.to_string()).expect("write har");
    let run = |args: &[&str]| {
        let out = burrow(&t.home)
            .arg("replay")
            .args(args)
            .output()
            .expect("burrow replay");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let file = file.to_string_lossy().into_owned();
    let (code, out) = run(&[&file, "--expect", "2xx"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("POST /hook -> 200 in "), "{out}");
    let (code, out) = run(&[&file, "--expect", "5xx"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("(expected 5xx)"), "{out}");
    let har_file = har_file.to_string_lossy().into_owned();
    let to = t.upstream.url();
    let (code, out) = run(&[&har_file, "--to", &to, "--expect", "2xx"]);
    assert_eq!(code, Some(1), "the 404 does not pass: {out}");
    assert_eq!(out.lines().count(), 5, "{out}");
    let (code, out) = run(&[&har_file, "--to", &to, "--expect", "2xx,404"]);
    assert_eq!(code, Some(0), "{out}");

    // Cleared.
    let resp = t
        .api(Method::DELETE, "/api/requests")
        .send()
        .await
        .expect("clear");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.json("/api/requests").await, json!([]));
    let resp = t
        .api(Method::GET, &format!("/api/requests/{id}"))
        .send()
        .await
        .expect("gone");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn new_captures_are_announced_as_events() {
    let t = Inspected::start("events").await;
    let resp = t
        .api(awc::http::Method::GET, "/api/events")
        .send()
        .await
        .expect("events");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut events = resp;
    let sent = t
        .call(awc::http::Method::GET, "/id/42")
        .send()
        .await
        .expect("get");
    assert_eq!(sent.status(), StatusCode::OK);
    let mut text = String::new();
    let read = async {
        while !text.contains("/id/42") {
            match events.next().await {
                Some(Ok(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("the event stream ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an event in time");
    assert!(text.starts_with("event: request\ndata: {"), "{text}");
}

#[actix_rt::test]
async fn the_ring_keeps_its_bounds_and_a_cut_body_is_not_replayed() {
    use awc::http::Method;
    let toml = "inspect = \"127.0.0.1:0\"\ninspect_entries = 3\ninspect_body_kib = 1";
    let t = Inspected::start_with("ring", Some(toml)).await;
    for i in 0..4 {
        let resp = t
            .call(Method::GET, &format!("/id/{i}"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let big = "x".repeat(4096);
    let resp = t
        .call(Method::POST, "/big")
        .send_body(big.clone())
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::OK);
    let list = t.list_of(3).await;
    let paths: Vec<&str> = list.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(paths, ["/big", "/id/3", "/id/2"]);
    let id = list[0]["id"].as_u64().expect("id");
    let big_one = t.json(&format!("/api/requests/{id}")).await;
    assert_eq!(big_one["request"]["body"]["size"], 4096);
    assert_eq!(big_one["request"]["body"]["captured"], 1024);
    assert_eq!(big_one["response"]["body"]["captured"], 1024);
    let mut resp = t
        .api(Method::POST, &format!("/api/requests/{id}/replay"))
        .send()
        .await
        .expect("replay");
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let why: Value = resp.json().await.expect("json");
    assert!(
        why["error"]
            .as_str()
            .is_some_and(|e| e.contains("kept only in part")),
        "{why}"
    );
    // With the whole body given, it goes.
    let mut resp = t
        .api(Method::POST, &format!("/api/requests/{id}/replay"))
        .send_json(&json!({"body": big}))
        .await
        .expect("replay");
    assert_eq!(resp.status(), StatusCode::OK);
    let replay: Value = resp.json().await.expect("json");
    assert_eq!(replay["response"]["body"]["size"], 4096);
}

#[actix_rt::test]
async fn a_websockets_messages_are_kept_each_way() {
    use awc::ws::{Frame, Message};
    let t = Inspected::start("ws").await;
    let echoes = t
        .websocket(vec![
            Message::Text("hello".into()),
            Message::Binary(vec![0u8, 1, 2, 255].into()),
        ])
        .await;
    assert!(matches!(&echoes[0], Frame::Text(t) if t == "hello"));
    assert!(matches!(&echoes[1], Frame::Binary(_)));
    let list = t.list_of(1).await;
    assert_eq!(list[0]["websocket"], true);
    assert_eq!(list[0]["status"], 101);
    assert_eq!(
        list[0]["error"],
        Value::Null,
        "a caller's close is a WebSocket's usual end"
    );
    let id = list[0]["id"].as_u64().expect("id");
    let d = t.json(&format!("/api/requests/{id}")).await;
    let seen: Vec<(String, String, String)> = d["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| {
                    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
                    (s(&m["direction"]), s(&m["kind"]), s(&m["payload"]["data"]))
                })
                .collect()
        })
        .unwrap_or_default();
    let t3 = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        seen[..4],
        [
            t3("in", "text", "hello"),
            t3("out", "text", "hello"),
            t3("in", "binary", "AAEC/w=="),
            t3("out", "binary", "AAEC/w=="),
        ],
        "{d}"
    );
    assert!(
        seen.iter().any(|m| m.0 == "in" && m.1 == "close"),
        "{seen:?}"
    );
    let resp = t
        .api(
            awc::http::Method::POST,
            &format!("/api/requests/{id}/replay"),
        )
        .send()
        .await
        .expect("replay");
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "an upgrade is not replayed"
    );
    let upgrade_fields = d["request"]["headers"].as_array().map_or(0, Vec::len);
    assert!(
        upgrade_fields > 0,
        "an upgrade's request fields are kept: {d}"
    );
}

#[actix_rt::test]
async fn other_names_and_origins_are_turned_away() {
    use awc::http::Method;
    let t = Inspected::start("guard").await;
    let resp = t
        .api(Method::GET, "/api/requests")
        .insert_header(("host", "attacker.example:4040"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = t
        .api(Method::DELETE, "/api/requests")
        .insert_header(("origin", "http://attacker.example"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let mut page = t.api(Method::GET, "/").send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.body().await.expect("html");
    assert!(String::from_utf8_lossy(&html).contains("burrow inspector"));
}
