//! A tunnel's header rules and `host_header = "rewrite"`, seen by a real
//! local service and a real caller.

mod support;

use support::*;

#[actix_rt::test]
async fn fields_are_changed_both_ways_and_the_host_rewritten() {
    let rules = "host_header = \"rewrite\"\n\
        [tunnels.request_headers]\nremove = [\"x-drop\"]\nset = { cookie = \"a=1\" }\nadd = { x-added = \"yes\" }\n\
        [tunnels.response_headers]\nremove = [\"x-echo-te\"]\nadd = { x-tunnel = \"burrow\" }\n";
    let upstream = upstream::Upstream::start();
    let server = start_server(server_config(""));
    let text = format!(
        "{}{rules}",
        client_toml(server.addr(), &upstream.url(), TOKEN)
    );
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _client = actix_rt::spawn(run_client(client_config_text(&text), tx));
    wait_registered(&mut events).await;

    let res = caller()
        .get(format!("http://{}/echo", server.addr()))
        .insert_header(("host", HOST))
        .insert_header(("cookie", "b=2"))
        .insert_header(("x-drop", "1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status().as_u16(), 200);
    let h = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        h("x-echo-host").as_deref(),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(h("x-echo-cookie").as_deref(), Some("a=1"));
    let names = h("x-echo-names").unwrap_or_default();
    assert!(
        names.contains("x-added") && !names.contains("x-drop"),
        "{names}"
    );
    // The forwarded host still tells the service the public name.
    assert_eq!(h("x-echo-xfh").as_deref(), Some(HOST));
    assert_eq!(h("x-tunnel").as_deref(), Some("burrow"));
    assert_eq!(h("x-echo-te"), None);
}

#[test]
fn a_bad_rule_is_named_in_the_configuration_error() {
    for (rules, key) in [
        ("host_header = \"nope\"\n", "tunnels[0].host_header"),
        (
            "[tunnels.request_headers]\nset = { \"a b\" = \"1\" }\n",
            "tunnels[0].request_headers",
        ),
    ] {
        let text = format!(
            "{}{rules}",
            client_toml("127.0.0.1:1".parse().unwrap(), "http://127.0.0.1:2", TOKEN)
        );
        let err = burrow_client::ClientConfig::from_str(&text, std::path::Path::new("c.toml"))
            .expect_err(rules)
            .to_string();
        assert!(err.contains(key), "{err}");
    }
}
