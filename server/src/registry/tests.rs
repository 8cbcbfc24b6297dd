//! The registry's handlers driven directly: what a session's exit frees,
//! and what a reload keeps.

use std::{path::Path, sync::Arc, time::Instant};

use actix::{Actor, Context, Handler, Recipient};
use burrow_common::{protocol::TunnelRequest, Outbox};

use super::Registry;
use crate::{
    config::ServerConfig,
    gate::Gate,
    handle::{Lookup, Register, Reload, SessionHandle, Unregister},
    messages::ToSession,
    metrics::Metrics,
    placement::WorkerId,
};

/// Stands in for session actors: handles are only ever counted alive.
struct Nobody;

impl Actor for Nobody {
    type Context = Context<Self>;
}

impl Handler<ToSession> for Nobody {
    type Result = ();
    fn handle(&mut self, _: ToSession, _: &mut Context<Self>) {}
}

const TEXT: &str = "listen = \"127.0.0.1:0\"\nreconnect_grace_secs = 0\n\
    [limits]\nmax_tunnels_per_token = 100000\nrequests_per_second = 1\n\
    [[hosts]]\nhost = \"*.localhost\"\ntoken = \"t\"\n";

fn registry() -> Registry {
    let config = ServerConfig::from_str(TEXT, Path::new("server.toml")).expect("config");
    Registry::new(&config, None, Metrics::new(), None)
}

/// Session `id`, its actor standing in as `to`.
fn session(to: &Recipient<ToSession>, id: u64) -> SessionHandle {
    SessionHandle {
        id,
        to_session: to.clone(),
        outbox: Outbox::new().0,
        gate: Arc::new(Gate::default()),
        path: Default::default(),
        opening: Default::default(),
        worker: WorkerId(0),
        peer: None,
    }
}

/// A hello's tunnels for `hosts`, with the test token.
fn tunnels(hosts: &[&str]) -> Vec<TunnelRequest> {
    let tunnel = |h: &&str| TunnelRequest {
        host: h.to_string(),
        token: "t".into(),
        access: Default::default(),
    };
    hosts.iter().map(tunnel).collect()
}

/// Registers session `id` of client `instance` for `hosts`.
fn register(r: &mut Registry, to: &Recipient<ToSession>, id: u64, instance: &str, hosts: &[&str]) {
    let msg = Register {
        session: session(to, id),
        tunnels: tunnels(hosts),
        instance: Some(instance.into()),
    };
    let granted = r.handle(msg, &mut Context::new()).0;
    assert!(granted.iter().all(Result::is_ok), "{granted:?}");
}

fn sessions_of(r: &mut Registry, host: &str) -> Vec<u64> {
    let found = r.handle(Lookup { host: host.into() }, &mut Context::new());
    found.map_or_else(Vec::new, |h| h.sessions.iter().map(|s| s.id).collect())
}

fn leave(r: &mut Registry, id: u64) {
    r.handle(
        Unregister {
            session_id: id,
            lost: false,
        },
        &mut Context::new(),
    );
}

#[actix_rt::test]
async fn a_session_leaving_frees_its_own_hosts_only() {
    let to = Nobody.start().recipient();
    let mut r = registry();
    register(
        &mut r,
        &to,
        1,
        "a",
        &["one.localhost", "two.localhost", "pool.localhost"],
    );
    register(&mut r, &to, 2, "b", &["three.localhost"]);
    register(&mut r, &to, 3, "a", &["pool.localhost"]);
    leave(&mut r, 1);
    assert!(sessions_of(&mut r, "one.localhost").is_empty());
    assert!(sessions_of(&mut r, "two.localhost").is_empty());
    assert_eq!(sessions_of(&mut r, "pool.localhost"), [3]);
    assert_eq!(sessions_of(&mut r, "three.localhost"), [2]);
    // Twice (a drain, then the stop) is once.
    leave(&mut r, 1);
    assert_eq!(sessions_of(&mut r, "pool.localhost"), [3]);
    leave(&mut r, 3);
    assert!(sessions_of(&mut r, "pool.localhost").is_empty());
    // The freed name can be claimed again, and its new holder's exit frees it.
    register(&mut r, &to, 4, "c", &["one.localhost"]);
    leave(&mut r, 2);
    assert_eq!(sessions_of(&mut r, "one.localhost"), [4]);
    leave(&mut r, 4);
    assert!(sessions_of(&mut r, "one.localhost").is_empty());
}

/// A reload to the configuration `text`.
fn reload_of(text: &str) -> Reload {
    let config = ServerConfig::from_str(text, Path::new("server.toml")).expect("config");
    Reload {
        hosts: config.hosts.clone(),
        limits: config.limits.clone(),
        access: config.access.clone(),
        grace: config.reconnect_grace,
    }
}

fn copy_of(r: &mut Registry, host: &str) -> crate::handle::HostSessions {
    let found = r.handle(Lookup { host: host.into() }, &mut Context::new());
    found.unwrap_or_else(|| panic!("{host} is not registered"))
}

#[actix_rt::test]
async fn a_change_to_one_host_leaves_the_copies_of_others_current() {
    let to = Nobody.start().recipient();
    let mut r = registry();
    register(&mut r, &to, 1, "a", &["pool.localhost", "alone.localhost"]);
    register(&mut r, &to, 2, "b", &["other.localhost"]);
    let (pool, alone, other) = (
        copy_of(&mut r, "pool.localhost"),
        copy_of(&mut r, "alone.localhost"),
        copy_of(&mut r, "other.localhost"),
    );
    // A second session of the first client joins one of its hosts.
    register(&mut r, &to, 3, "a", &["pool.localhost"]);
    assert!(
        !pool.is_current(),
        "the pool that changed is looked up again"
    );
    assert!(alone.is_current() && other.is_current(), "no other host is");
    // Another client's session leaving touches its own host only.
    let (pool, alone) = (
        copy_of(&mut r, "pool.localhost"),
        copy_of(&mut r, "alone.localhost"),
    );
    leave(&mut r, 2);
    assert!(!other.is_current());
    assert!(pool.is_current() && alone.is_current());
    // A reload may change every host's state: every copy is looked up again.
    r.handle(reload_of(TEXT), &mut Context::new());
    assert!(!pool.is_current() && !alone.is_current());
}

#[actix_rt::test]
async fn a_reload_keeps_the_rate_a_host_has_spent() {
    let to = Nobody.start().recipient();
    let mut r = registry();
    register(&mut r, &to, 1, "a", &["one.localhost"]);
    let state = |r: &mut Registry| {
        let found = r.handle(
            Lookup {
                host: "one.localhost".into(),
            },
            &mut Context::new(),
        );
        found.expect("held").tunnel
    };
    let before = state(&mut r);
    let bucket = before.rate.as_ref().expect("a rate");
    while bucket.take().is_ok() {}
    r.handle(reload_of(TEXT), &mut Context::new());
    let after = state(&mut r);
    assert!(
        !Arc::ptr_eq(&before, &after),
        "a new state after the reload"
    );
    let bucket = after.rate.as_ref().expect("a rate");
    assert!(bucket.take().is_err(), "the spent tokens came back");
}

/// How long the registry takes to release `n` sessions of one host each:
/// `cargo test -p burrow-server --release --lib release_of_many -- --ignored --nocapture`.
#[actix_rt::test]
#[ignore]
async fn release_of_many_sessions() {
    let to = Nobody.start().recipient();
    for n in [1_000u64, 10_000] {
        let mut r = registry();
        for id in 1..=n {
            register(
                &mut r,
                &to,
                id,
                &id.to_string(),
                &[&format!("h{id}.localhost")],
            );
        }
        let start = Instant::now();
        for id in 1..=n {
            leave(&mut r, id);
        }
        let took = start.elapsed();
        println!(
            "released {n} sessions in {took:?} ({:?} each)",
            took / n as u32
        );
        assert!(r.hosts.is_empty());
    }
}

#[actix_rt::test]
async fn a_worker_remembers_an_unknown_host_only_until_a_host_is_taken_in() {
    use crate::placement::{Placement, WorkerIds};
    let mut r = registry();
    let added = r.hosts_added();
    let to = Nobody.start().recipient();
    register(&mut r, &to, 1, "a", &["one.localhost"]);
    assert_eq!(added.load(std::sync::atomic::Ordering::Acquire), 1);
    let handle = crate::handle::RegistryHandle::new(r.start()).counting(added.clone());
    let worker = WorkerIds::default().this_worker();
    let unknown = |p: &Placement| matches!(p, Placement::Unknown);
    assert!(unknown(&worker.session_for(&handle, "two.localhost").await));
    // Noted: still unknown, from the worker's note this time.
    assert!(unknown(&worker.session_for(&handle, "two.localhost").await));
    // A host taken in since: the note does not hide it.
    let hello = tunnels(&["two.localhost"]);
    let granted = handle
        .register(session(&to, 2), hello, Some("b".into()))
        .await;
    assert!(granted.iter().all(Result::is_ok), "{granted:?}");
    assert_eq!(handle.hosts_added(), 2);
    let placed = worker.session_for(&handle, "two.localhost").await;
    assert!(
        !unknown(&placed),
        "the host registered since is still unknown"
    );
}
