use super::*;

fn known(server: Option<&str>, token: Option<&str>) -> Known {
    Known {
        server: server.map(str::to_owned),
        token: token.map(Token::from),
        ..Known::default()
    }
}

#[test]
fn targets_are_ports_host_ports_or_urls() {
    assert_eq!(target_url("3000").unwrap(), "http://localhost:3000");
    assert_eq!(
        target_url("192.168.1.5:8080").unwrap(),
        "http://192.168.1.5:8080"
    );
    assert_eq!(
        target_url("https://localhost:8443").unwrap(),
        "https://localhost:8443"
    );
    for bad in ["0", "70000", "web", ":80", "host:", "host:x", ""] {
        let e = target_url(bad).unwrap_err().to_string();
        assert!(
            e.contains("is not a local service") && e.contains("3000"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn servers_get_a_scheme_and_the_control_path() {
    let cases = [
        (
            "tunnel.example.com",
            "wss://tunnel.example.com/_burrow/connect",
        ),
        ("127.0.0.1:8080", "ws://127.0.0.1:8080/_burrow/connect"),
        ("localhost:8080", "ws://localhost:8080/_burrow/connect"),
        ("[::1]:8080", "ws://[::1]:8080/_burrow/connect"),
        (
            "https://t.example.com/",
            "https://t.example.com/_burrow/connect",
        ),
        ("ws://127.0.0.1:8080/custom", "ws://127.0.0.1:8080/custom"),
    ];
    for (given, want) in cases {
        assert_eq!(server_url(given).unwrap(), want, "{given}");
    }
    let e = server_url("ftp://x").unwrap_err().to_string();
    assert!(e.contains("ws://, wss://, http:// or https://"), "{e}");
}

#[test]
fn the_first_place_that_knows_wins() {
    let flags = known(None, Some("from-flag"));
    let env = known(Some("127.0.0.1:9"), None);
    let login = known(Some("login.example.com"), Some("from-login"));
    let c = config("3000", &[], &[flags, env, login]).unwrap();
    assert_eq!(c.server.as_str(), "ws://127.0.0.1:9/_burrow/connect");
    assert_eq!(c.tunnels.len(), 1);
    let t = &c.tunnels[0];
    assert_eq!(t.token.expose(), "from-flag");
    assert_eq!(t.local, "http://localhost:3000");
    assert!(t.host.is_empty(), "no --host: a random name is asked for");

    let hosts = ["a.example.com".to_owned(), "b.example.com".to_owned()];
    let c = config("8080", &hosts, &[known(Some("x.example.com"), Some("t"))]).unwrap();
    let names: Vec<_> = c.tunnels.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(names, hosts);
}

#[test]
fn what_is_missing_is_said_with_the_way_out() {
    let e = config("3000", &[], &[known(None, Some("t"))]).unwrap_err();
    assert!(matches!(e, QuickError::NoServer));
    assert!(e
        .to_string()
        .contains("burrow login --server URL --token TOKEN"));
    let e = config("3000", &[], &[known(Some("x.example.com"), None)]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("no token given for wss://x.example.com/"),
        "{e}"
    );
    let bad_host = ["not a host".to_owned()];
    let e = config(
        "3000",
        &bad_host,
        &[known(Some("x.example.com"), Some("t"))],
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("--host: "), "{e}");
}

#[test]
fn a_service_on_this_machine_is_trusted_over_https() {
    let places = [known(Some("x.example.com"), Some("t"))];
    let c = config("https://localhost:8443", &[], &places).unwrap();
    assert!(c.tunnels[0].local_tls.is_some());
    assert!(local_is_loopback("https://127.0.0.1:8443"));
    assert!(local_is_loopback("https://[::1]:8443/app"));
    assert!(local_is_loopback("https://localhost"));
    assert!(!local_is_loopback("https://intranet.example.com"));
}

#[test]
fn the_files_inspector_settings_hold_in_quick_mode() {
    let dir = std::env::temp_dir().join(format!("burrow-quick-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("client.toml");
    let text = "server = \"ws://127.0.0.1:8080/_burrow/connect\"\ninspect = false\n\
                [[tunnels]]\nhost = \"a.localhost\"\ntoken = \"t\"\nlocal = \"http://localhost:3000\"\n";
    std::fs::write(&path, text).expect("write");
    let file = Known::from_file(&path).expect("the file");
    let config = super::config("3000", &[], &[known(None, None), file]).expect("config");
    assert_eq!(config.inspect.listen, None);
    // Without a file's word, it is on at its default address.
    let config =
        super::config("3000", &[], &[known(Some("127.0.0.1:8080"), Some("t"))]).expect("config");
    assert!(config.inspect.listen.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
