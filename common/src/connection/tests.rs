use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use super::{
    writer::{write_loop, SinkClosed, WsOut, WsSink},
    Heartbeat, Incoming, Link, ReceiveError, WsIn,
};
use crate::{
    batch,
    flow::PathState,
    fragments::{FragmentError, Piece},
    outbox::{data_fragments, Control, Outgoing, Pending},
    Frame, Outbox,
};

fn link(heartbeat: Heartbeat) -> (Link, Pending) {
    let (outbox, pending) = Outbox::new();
    (
        Link::new(outbox, Arc::new(PathState::new()), heartbeat),
        pending,
    )
}

fn frames(incoming: Incoming) -> Vec<Frame> {
    match incoming {
        Incoming::Frames(frames) => frames.map(|f| f.expect("decodes")).collect(),
        Incoming::Closed(why) => panic!("closed: {why:?}"),
    }
}

fn controls(pending: &mut Pending) -> Vec<Control> {
    let mut out = Vec::new();
    while let Some(entry) = pending.try_recv() {
        match entry {
            Outgoing::Control(c) => out.push(c),
            other => panic!("not a control frame: {other:?}"),
        }
    }
    out
}

#[test]
fn a_batch_gives_its_frames_in_order() {
    let (mut link, _pending) = link(Heartbeat::Sends);
    let sent = [
        Frame::End { stream: 1 },
        Frame::GoAway,
        Frame::End { stream: 3 },
    ];
    let mut packed = Vec::new();
    batch::pack(
        sent.iter().map(|f| Outgoing::Frame(f.encode().unwrap())),
        &mut packed,
    );
    let [Outgoing::Frame(msg)] = packed.as_slice() else {
        panic!("one message: {packed:?}");
    };
    let got = frames(link.receive(WsIn::Binary(msg.clone())).unwrap());
    assert_eq!(got, sent);
}

#[test]
fn a_data_frame_in_fragments_comes_piece_by_piece() {
    let (mut link, _pending) = link(Heartbeat::Sends);
    let pieces = vec![
        Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
        Bytes::from_static(b"x"),
    ];
    let mut got = Vec::new();
    for piece in data_fragments(7, pieces.clone()) {
        got.extend(frames(link.receive(WsIn::Fragment(piece)).unwrap()));
    }
    let expect: Vec<Frame> = pieces
        .into_iter()
        .map(|data| Frame::Data { stream: 7, data })
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn pings_are_answered_as_the_heartbeat_says() {
    let (mut sends, mut pending) = link(Heartbeat::Sends);
    let ping = Bytes::from_static(b"hb");
    assert!(frames(sends.receive(WsIn::Ping(ping.clone())).unwrap()).is_empty());
    assert_eq!(controls(&mut pending), [Control::Pong(ping.clone())]);

    let (mut follows, mut pending) = link(Heartbeat::Follows);
    follows.receive(WsIn::Ping(ping.clone())).unwrap();
    let sent = controls(&mut pending);
    assert_eq!(sent[0], Control::Pong(ping));
    assert!(
        matches!(&sent[1], Control::Ping(p) if p.len() == 8),
        "{sent:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_pong_of_a_ping_measures_the_path() {
    let (mut link, mut pending) = link(Heartbeat::Sends);
    link.ping().unwrap();
    let sent = controls(&mut pending);
    let [Control::Ping(payload)] = sent.as_slice() else {
        panic!("a ping: {sent:?}");
    };
    tokio::time::advance(Duration::from_millis(40)).await;
    link.receive(WsIn::Pong(payload.clone())).unwrap();
    assert_eq!(link.path().rtt(), Some(Duration::from_millis(40)));
}

#[test]
fn text_breaks_the_protocol_and_a_close_is_handed_up() {
    let (mut link, _pending) = link(Heartbeat::Sends);
    assert!(matches!(
        link.receive(WsIn::Text),
        Err(ReceiveError::Fragment(FragmentError::Text))
    ));
    assert!(matches!(
        link.receive(WsIn::Fragment(Piece::Continue(Bytes::new()))),
        Err(ReceiveError::Fragment(FragmentError::NotStarted))
    ));
    let closed = link.receive(WsIn::Close(Some("bye".into()))).unwrap();
    assert!(matches!(closed, Incoming::Closed(Some(why)) if why == "bye"));
}

/// A socket that records what it is sent, and can fail after `fail_after`
/// frames.
#[derive(Default)]
struct Recorder {
    sent: Vec<WsOut>,
    flushes: usize,
    closed: Option<Option<(u16, String)>>,
    fail_after: Option<usize>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl WsSink for Recorder {
    async fn send(&mut self, out: WsOut) -> Result<(), SinkClosed> {
        if self.fail_after == Some(self.sent.len()) {
            return Err(SinkClosed);
        }
        self.log.lock().unwrap().push(format!("{out:?}"));
        self.sent.push(out);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkClosed> {
        self.flushes += 1;
        self.log.lock().unwrap().push("flush".into());
        Ok(())
    }

    async fn close(mut self, close: Option<(u16, String)>) {
        self.closed = Some(close.clone());
        self.log.lock().unwrap().push(format!("close {close:?}"));
    }
}

#[tokio::test]
async fn the_writer_sends_in_order_and_nothing_after_a_close() {
    let (outbox, pending) = Outbox::new();
    let log = Arc::default();
    let sink = Recorder {
        log: Arc::clone(&log),
        ..Recorder::default()
    };
    outbox.send(&Frame::End { stream: 1 }).unwrap();
    let big = crate::protocol::MAX_DATA_PAYLOAD;
    let room = outbox.data_room(big).await.unwrap();
    outbox
        .send_data(3, vec![Bytes::from(vec![1; big])], room)
        .unwrap();
    outbox
        .send_control(Control::Pong(Bytes::from_static(b"p")))
        .unwrap();
    outbox
        .send_control(Control::Close {
            code: 1000,
            reason: "bye".into(),
        })
        .unwrap();
    outbox.send(&Frame::End { stream: 5 }).unwrap();
    write_loop(sink, pending).await;
    let log = log.lock().unwrap().clone();
    let expect_start = format!(
        "{:?}",
        WsOut::Binary(Frame::End { stream: 1 }.encode().unwrap())
    );
    assert_eq!(log[0], expect_start);
    assert!(log[1].starts_with("Fragment(FirstBinary("), "{log:?}");
    assert!(log[2].starts_with("Fragment(Last("), "{log:?}");
    assert_eq!(
        log[3],
        format!("{:?}", WsOut::Pong(Bytes::from_static(b"p")))
    );
    assert_eq!(log[4], "flush");
    assert_eq!(
        log[5],
        format!("close {:?}", Some((1000u16, "bye".to_owned())))
    );
    assert_eq!(log.len(), 6, "nothing after the close: {log:?}");
}

#[tokio::test]
async fn the_writer_stops_when_the_socket_fails_or_the_queue_ends() {
    let (outbox, pending) = Outbox::new();
    let log = Arc::default();
    let sink = Recorder {
        fail_after: Some(1),
        log: Arc::clone(&log),
        ..Recorder::default()
    };
    for stream in 1..4 {
        outbox
            .send_control(Control::Ping(Bytes::from(vec![stream])))
            .unwrap();
    }
    write_loop(sink, pending).await;
    assert_eq!(log.lock().unwrap().len(), 1, "stopped at the failure");
    // Every sender gone: the socket is ended quietly.
    let (outbox, pending) = Outbox::new();
    let log = Arc::default();
    let sink = Recorder {
        log: Arc::clone(&log),
        ..Recorder::default()
    };
    outbox.send(&Frame::GoAway).unwrap();
    drop(outbox);
    write_loop(sink, pending).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.last().map(String::as_str),
        Some("close None"),
        "{log:?}"
    );
}
