use std::sync::mpsc;

use super::*;

/// Hands what it is given to the test.
struct Probe(mpsc::Sender<(Vec<String>, u64)>, Capture);

impl Subscriber for Probe {
    fn capture(&self) -> Capture {
        self.1
    }

    fn events(&mut self, batch: &[TrafficEvent], dropped: u64) {
        let names = batch
            .iter()
            .map(|e| match e {
                TrafficEvent::Started { uri, .. } => format!("started {uri}"),
                TrafficEvent::Head { status, .. } => format!("head {status}"),
                TrafficEvent::Progress { received, .. } => format!("progress {received}"),
                TrafficEvent::Ended(e) => format!("ended {}", e.uri),
            })
            .collect();
        let _ = self.0.send((names, dropped));
    }
}

fn exchange(uri: &str) -> Exchange {
    Exchange {
        stream: 1,
        status: Some(200),
        ..Exchange::new_for("a.localhost", "GET", uri)
    }
}

#[test]
fn no_subscriber_no_hub() {
    assert!(Hub::start(Vec::new()).expect("start").is_none());
}

#[test]
fn subscribers_get_every_event_in_order_in_batches_off_the_callers_thread() {
    let (tx, rx) = mpsc::channel();
    let (tx2, rx2) = mpsc::channel();
    let live = Capture {
        live: true,
        ..Capture::default()
    };
    let subscribers: Vec<Box<dyn Subscriber>> = vec![
        Box::new(Probe(tx, Capture::default())),
        Box::new(Probe(tx2, live)),
    ];
    let hub = Hub::start(subscribers).expect("start").expect("a hub");
    // What each wants, together.
    assert!(hub.capture().live);
    let e = exchange("/a");
    hub.started(&e);
    hub.head(&e);
    hub.exchange(e.clone());
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (names, dropped) = rx.recv_timeout(Duration::from_secs(10)).expect("a batch");
        assert_eq!(dropped, 0);
        seen.extend(names);
    }
    assert_eq!(seen, ["started /a", "head 200", "ended /a"]);
    let (names, _) = rx2
        .recv_timeout(Duration::from_secs(10))
        .expect("the other one");
    assert_eq!(names[0], "started /a");
    hub.close();
}

#[test]
fn a_stalled_subscriber_costs_the_callers_nothing_and_the_rest_are_counted() {
    let (tx, rx) = mpsc::channel();
    let hub = Hub::start(vec![Box::new(Probe(tx, Capture::default()))])
        .expect("start")
        .expect("a hub");
    // The hub's thread delivers one batch and then is held up (nobody
    // reads the probe's channel... it is unbounded, so hold the lock).
    let held = hub.shared.subscribers();
    let e = exchange("/b");
    for _ in 0..MAX_QUEUED + 10 {
        hub.exchange(e.clone());
    }
    drop(held);
    let mut total = 0;
    let mut dropped = 0;
    while total + dropped < (MAX_QUEUED + 10) as u64 {
        let (names, d) = rx.recv_timeout(Duration::from_secs(10)).expect("a batch");
        total += names.len() as u64;
        dropped += d;
    }
    assert_eq!(total, MAX_QUEUED as u64);
    assert_eq!(dropped, 10);
    hub.close();
}

#[test]
fn a_full_batch_goes_out_without_waiting_for_the_gathering_to_end() {
    let (tx, rx) = mpsc::channel();
    // A gathering far longer than the test waits.
    let probe: Vec<Box<dyn Subscriber>> = vec![Box::new(Probe(tx, Capture::default()))];
    let hub = Hub::start_gathering(probe, Duration::from_secs(3600))
        .expect("start")
        .expect("a hub");
    let e = exchange("/c");
    hub.exchange(e.clone());
    // The first event has the hub's thread gathering.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hub.shared.lock().gathering {
        assert!(Instant::now() < deadline, "the hub never started gathering");
        thread::yield_now();
    }
    for _ in 1..BATCH {
        hub.exchange(e.clone());
    }
    let mut seen = 0;
    while seen < BATCH {
        let (names, _) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a full batch, before the gathering's end");
        seen += names.len();
    }
    assert_eq!(seen, BATCH);
    hub.close();
}
