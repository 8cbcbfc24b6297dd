//! The inspector's page in a real browser (headless Chromium): requests
//! sent through a real tunnel appear in the list as they pass; one is
//! opened and its headers and body shown; it is edited and replayed, the
//! replay reaches the local service, and its differences show beside the
//! original; a WebSocket's messages show. Screenshots are saved under
//! target/ (`inspector-*.png`).

mod browser;
mod support;

use std::time::Duration;

use awc::{http::Method, ws::Message};
use browser::Browser;
use fantoccini::{elements::Element, Client, Locator};
use support::inspected::Inspected;

/// The element `css` once it exists.
async fn find(c: &Client, css: &str) -> Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

/// The element `css` once its text holds `needle`; that text.
async fn text_with(c: &Client, css: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} never held {needle:?}; it holds {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn the_page_shows_edits_replays_and_marks_what_changed() {
    let t = Inspected::start("page").await;
    let browser = Browser::start("inspector").await;
    // The elements hold the session too: they are gone before it closes.
    drive(&t, &browser).await;
    browser.close().await;
}

async fn drive(t: &Inspected, browser: &Browser) {
    let c = browser.client();
    c.goto(&t.inspector).await.expect("open the page");
    find(c, "#list").await;

    // Sent after the page opened: it appears as it passes.
    let body = r#"{"event": "paid", "amount": 10, "items": [1, 2]}"#;
    let resp = t
        .call(Method::POST, "/webhook")
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .expect("post");
    assert!(resp.status().is_success());
    let row = find(c, "#list tr td.path").await;
    assert!(row.text().await.unwrap_or_default().contains("/webhook"));
    row.click().await.expect("open it");
    let shown = text_with(c, "#view", "content-type").await;
    assert!(
        shown.contains("POST /webhook") && shown.contains("application/json"),
        "{shown}"
    );
    let pretty = text_with(c, "#view pre.json", "\"amount\": 10").await;
    assert!(pretty.contains("\"event\": \"paid\""), "{pretty}");
    browser.screenshot("inspector-detail").await;

    // Edited and replayed: the echo service answers with the edited body.
    find(c, "#edit-open").await.click().await.expect("edit");
    let field = find(c, "#e-body").await;
    field.clear().await.expect("clear");
    field
        .send_keys(r#"{"event": "paid", "amount": 12, "items": [1, 2]}"#)
        .await
        .expect("type");
    find(c, "#e-send").await.click().await.expect("send");
    let changes = text_with(c, "#json-changes", "/amount").await;
    assert!(
        changes.contains("10") && changes.contains("12"),
        "{changes}"
    );
    let diff = text_with(c, "#diff", "Now (#2)").await;
    assert!(
        diff.contains("Before (#1)") && diff.contains("x-echo-cl"),
        "{diff}"
    );
    text_with(c, "#list", "replay of #1").await;
    browser.screenshot("inspector-replay").await;

    // A WebSocket's messages.
    let echoes = t
        .websocket(vec![Message::Text("hello from the test".into())])
        .await;
    assert_eq!(echoes.len(), 1);
    let ws_row = text_with(c, "#list", "(WebSocket)").await;
    assert!(ws_row.contains("/ws"), "{ws_row}");
    let rows = c.find_all(Locator::Css("#list tr")).await.expect("rows");
    rows[0].click().await.expect("open the WebSocket");
    let messages = text_with(c, "#messages", "hello from the test").await;
    assert!(messages.contains("text"), "{messages}");
    browser.screenshot("inspector-websocket").await;
}
