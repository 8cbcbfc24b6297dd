//! What an observer of the client's traffic sees: one [`Exchange`] per
//! forwarded request (method, target, headers, status, sizes, timings and
//! a bounded capture of each body), handed over when the exchange ends,
//! and, to an observer that asks ([`Capture::live`]), as it starts and as
//! its answer's head comes.
//!
//! The forwarding path records an exchange only while an observer is set
//! ([`crate::forward::ForwardContext::observer`]); without one, a request
//! pays for one branch per stage and nothing else. The observer is called
//! on the forwarding thread, so the one the binary sets is [`hub::Hub`],
//! which only queues: its subscribers (the request log, the terminal
//! screen) take the events in batches on a thread of their own.

mod fields;
mod home;
pub mod hub;
mod recording;
pub mod ws;

use std::{
    cell::RefCell,
    collections::VecDeque,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use burrow_common::{protocol::RequestHead, ResetCode};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::failure::StreamFailure;
pub use fields::Fields;
pub(crate) use home::release;
use recording::Recording;

/// How many body bytes pass between two progress reports of one exchange:
/// a long transfer is seen moving, a small one costs nothing.
pub const PROGRESS_STEP: u64 = 256 * 1024;

/// What an observer wants recorded beyond the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capture {
    /// Keep the request's and the response's header fields.
    pub headers: bool,
    /// Keep up to this many bytes of each body (0: none).
    pub body_bytes: usize,
    /// Also tell when an exchange starts and when its answer's head comes,
    /// not only when it ends.
    pub live: bool,
}

impl Capture {
    /// What either of two observers wants.
    pub fn union(self, other: Capture) -> Capture {
        Capture {
            headers: self.headers || other.headers,
            body_bytes: self.body_bytes.max(other.body_bytes),
            live: self.live || other.live,
        }
    }
}

/// Sees every exchange the client forwards, on any of its connections
/// (each on its own thread).
pub trait ExchangeObserver: Send + Sync {
    /// What to record for each exchange; by default only the summary.
    fn capture(&self) -> Capture {
        Capture::default()
    }

    /// An exchange has started: the request arrived from the server (only
    /// when [`Capture::live`]).
    fn started(&self, _exchange: &Exchange) {}

    /// The local service's response head came (only when
    /// [`Capture::live`]).
    fn head(&self, _exchange: &Exchange) {}

    /// A body crossed another [`PROGRESS_STEP`] bytes, either way (only
    /// when [`Capture::live`]).
    fn progress(&self, _exchange: &Exchange) {}

    /// One exchange has ended (answered, failed or cut): the record, handed
    /// over rather than copied.
    fn exchange(&self, exchange: Exchange);
}

/// A body as far as it was captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyCapture {
    /// The first bytes, up to [`Capture::body_bytes`].
    pub bytes: Vec<u8>,
    /// All the bytes that passed, captured or not.
    pub total: u64,
}

impl BodyCapture {
    fn take(&mut self, chunk: &[u8], limit: usize) {
        self.total += chunk.len() as u64;
        let room = limit.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..room.min(chunk.len())]);
    }
}

/// One forwarded request and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The stream it travelled on.
    pub stream: u32,
    /// The public host.
    pub host: String,
    /// The request method.
    pub method: String,
    /// The request target (path and query) as the caller sent it.
    pub uri: String,
    /// `true` for a WebSocket upgrade.
    pub upgrade: bool,
    /// The request's header fields, when captured.
    pub request_headers: Fields,
    /// The request body.
    pub request_body: BodyCapture,
    /// The local service's status, once its head arrived.
    pub status: Option<u16>,
    /// The response's header fields, when captured.
    pub response_headers: Fields,
    /// The response body.
    pub response_body: BodyCapture,
    /// When the request arrived from the server.
    pub started: Instant,
    /// How long the local service took to send its response head.
    pub head_after: Option<Duration>,
    /// How long it took to hand the whole request to the local service
    /// (its head, and its body when it has one).
    pub sent_after: Option<Duration>,
    /// How long the whole exchange took.
    pub elapsed: Duration,
    /// Why it ended early, if it did.
    pub failure: Option<StreamFailure>,
    /// An upgraded connection's messages, each way, the newest
    /// [`ws::MAX_MESSAGES`] (when headers are captured).
    pub messages: VecDeque<ws::WsMessage>,
    /// Messages left out of `messages` (older ones, past the bound).
    pub messages_dropped: u64,
    /// The thread whose heap holds it (see `home`).
    pub(crate) home: usize,
}

impl Exchange {
    /// An exchange of `method` `uri` on `host`, starting now, with nothing
    /// recorded yet.
    pub fn new_for(host: &str, method: &str, uri: &str) -> Exchange {
        Exchange {
            host: host.to_owned(),
            method: method.to_owned(),
            uri: uri.to_owned(),
            ..Exchange::emptied(Instant::now())
        }
    }

    /// What is left in a recording once its exchange was handed over: no
    /// text, no bytes (nothing allocated).
    fn emptied(started: Instant) -> Exchange {
        Exchange {
            stream: 0,
            host: String::new(),
            method: String::new(),
            uri: String::new(),
            upgrade: false,
            request_headers: Fields::default(),
            request_body: BodyCapture::default(),
            status: None,
            response_headers: Fields::default(),
            response_body: BodyCapture::default(),
            started,
            head_after: None,
            sent_after: None,
            elapsed: Duration::ZERO,
            failure: None,
            messages: VecDeque::new(),
            messages_dropped: 0,
            home: home::here(),
        }
    }
}

/// The exchange being recorded for one stream, or nothing when no
/// observer is set.
pub struct Trace(Option<Rc<RefCell<Recording>>>);

impl Trace {
    /// Starts recording the exchange of `head` for `observer`, if any: its
    /// clock starts now, while its method, target and fields are taken by
    /// [`Trace::request`] (at once for a live observer, which is told now).
    pub fn start(
        observer: Option<&Arc<dyn ExchangeObserver>>,
        stream: u32,
        head: &RequestHead,
    ) -> Self {
        let trace = Trace(observer.map(|o| {
            let mut exchange = Exchange::emptied(Instant::now());
            exchange.stream = stream;
            exchange.upgrade = head.upgrade;
            Rc::new(RefCell::new(Recording {
                capture: o.capture(),
                observer: Arc::clone(o),
                exchange,
                texts_taken: false,
                fields_taken: false,
            }))
        }));
        trace.with(|r| {
            if r.capture.live {
                r.take_request(head);
                r.observer.started(&r.exchange);
            }
        });
        trace
    }

    /// A trace that records nothing.
    pub fn idle() -> Self {
        Trace(None)
    }

    fn with(&self, f: impl FnOnce(&mut Recording)) {
        if let Some(r) = &self.0 {
            f(&mut r.borrow_mut());
        }
    }

    /// The request as received from the server: its host, method, target
    /// and, when captured, its header fields. Taken once, however often
    /// asked, so that a path may take it where it costs the caller least.
    pub fn request(&mut self, head: &RequestHead) {
        self.with(|r| r.take_request(head));
    }

    /// The request's header fields alone, when captured (taken once too).
    pub fn request_fields(&mut self, head: &RequestHead) {
        self.with(|r| r.take_fields(head));
    }

    /// The request, handed over once the path is done with it: what was
    /// not taken yet is taken, its texts moved rather than copied.
    pub fn request_done(&mut self, head: RequestHead) {
        self.with(|r| r.take_request_from(head));
    }

    /// Whether header fields are kept: [`Trace::response_head`] wants them
    /// then.
    pub fn keeps_headers(&self) -> bool {
        self.0.as_ref().is_some_and(|r| r.borrow().capture.headers)
    }

    /// The response head, as it goes back to the server, its fields copied
    /// when [`Trace::keeps_headers`].
    pub fn response_head(&mut self, status: u16, fields: Option<Fields>, inline: Option<&[u8]>) {
        self.with(|r| {
            let e = &mut r.exchange;
            e.status = Some(status);
            e.head_after = Some(e.started.elapsed());
            if let Some(fields) = fields {
                e.response_headers = fields;
            }
            if let Some(body) = inline {
                e.response_body.take(body, r.capture.body_bytes);
            }
            if r.capture.live {
                r.observer.head(&r.exchange);
            }
        });
    }

    /// Counts a response body whose bytes were not tapped (a relayed
    /// upgrade's), or that `tap_response` saw already.
    pub fn response_bytes(&mut self, sent: u64) {
        self.with(|r| {
            let body = &mut r.exchange.response_body;
            body.total = body.total.max(sent);
        });
    }

    /// The request body, recorded as it passes when observed; its end is
    /// when the request was sent.
    pub fn tap_request<S, E>(&self, body: S) -> impl Stream<Item = Result<Bytes, E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let end = self.0.clone().map(|r| {
            futures_util::stream::poll_fn(move |_| {
                let e = &mut r.borrow_mut().exchange;
                e.sent_after = Some(e.started.elapsed());
                std::task::Poll::Ready(None)
            })
        });
        let end = futures_util::stream::iter(end).flatten();
        self.tap(body, |e| &mut e.request_body).chain(end)
    }

    /// A request without a body is handed to the local service now.
    pub fn request_sent(&mut self) {
        self.with(|r| {
            let e = &mut r.exchange;
            e.sent_after = Some(e.started.elapsed());
        });
    }

    /// The response body, recorded as it passes when observed.
    pub fn tap_response<S, E>(&self, body: S) -> impl Stream<Item = Result<Bytes, E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        self.tap(body, |e| &mut e.response_body)
    }

    fn tap<S, E>(
        &self,
        body: S,
        which: fn(&mut Exchange) -> &mut BodyCapture,
    ) -> impl Stream<Item = Result<Bytes, E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        match &self.0 {
            None => body.left_stream(),
            Some(r) => {
                let r = r.clone();
                body.inspect(move |chunk| {
                    if let Ok(chunk) = chunk {
                        let mut r = r.borrow_mut();
                        let limit = r.capture.body_bytes;
                        let body = which(&mut r.exchange);
                        let before = body.total / PROGRESS_STEP;
                        body.take(chunk, limit);
                        let stepped = body.total / PROGRESS_STEP != before;
                        if stepped && r.capture.live {
                            r.observer.progress(&r.exchange);
                        }
                    }
                })
                .right_stream()
            }
        }
    }

    /// The bytes of one direction of an upgraded connection, whose
    /// messages are recorded as they pass when headers are captured.
    pub fn tap_messages<S, E>(
        &self,
        from_caller: bool,
        bytes: S,
    ) -> impl Stream<Item = Result<Bytes, E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let recording = self.0.as_ref().filter(|r| r.borrow().capture.headers);
        match recording {
            None => bytes.left_stream(),
            Some(r) => {
                let r = r.clone();
                let mut reader = ws::FrameReader::new(from_caller);
                bytes
                    .inspect(move |chunk| {
                        if let Ok(chunk) = chunk {
                            let mut r = r.borrow_mut();
                            let e = &mut r.exchange;
                            let at = e.started.elapsed();
                            reader.feed(chunk, at, &mut |m| {
                                if e.messages.len() == ws::MAX_MESSAGES {
                                    e.messages.pop_front();
                                    e.messages_dropped += 1;
                                }
                                e.messages.push_back(m);
                            });
                        }
                    })
                    .right_stream()
            }
        }
    }

    /// Ends the recording and hands the exchange to its observer.
    pub fn finish(mut self, failure: Option<StreamFailure>) {
        self.hand(failure);
    }

    fn hand(&mut self, failure: Option<StreamFailure>) {
        let Some(r) = self.0.take() else {
            return;
        };
        let mut r = r.borrow_mut();
        let started = r.exchange.started;
        let mut exchange = std::mem::replace(&mut r.exchange, Exchange::emptied(started));
        exchange.elapsed = started.elapsed();
        exchange.failure = failure;
        r.observer.exchange(exchange);
    }
}

/// A stream the server cancelled drops its forwarding task: the exchange
/// is handed over all the same, as cancelled (the caller went away), or as
/// ended for a switched connection the caller closed, its usual end.
impl Drop for Trace {
    fn drop(&mut self) {
        let Some(r) = &self.0 else {
            return;
        };
        let switched = {
            let e = &r.borrow().exchange;
            e.upgrade && e.status == Some(101)
        };
        let why = "cancelled: the caller went away";
        let failure = (!switched).then(|| StreamFailure::new(ResetCode::Cancel, why));
        self.hand(failure);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::{stream, StreamExt};

    use burrow_common::protocol::HeaderList;

    use super::*;

    /// Notes what it is told.
    #[derive(Default)]
    struct Notes(Mutex<Vec<String>>, bool);

    impl ExchangeObserver for Notes {
        fn capture(&self) -> Capture {
            Capture {
                live: self.1,
                ..Capture::default()
            }
        }
        fn started(&self, e: &Exchange) {
            self.0.lock().unwrap().push(format!("started {}", e.uri));
        }
        fn progress(&self, e: &Exchange) {
            let n = e.response_body.total;
            self.0.lock().unwrap().push(format!("progress {n}"));
        }
        fn exchange(&self, e: Exchange) {
            let n = e.response_body.total;
            self.0.lock().unwrap().push(format!("ended {n}"));
        }
    }

    fn head() -> RequestHead {
        RequestHead {
            host: "a.localhost".into(),
            method: "GET".into(),
            uri: "/big".into(),
            headers: HeaderList::new(),
            end_stream: true,
            upgrade: false,
            credit: 0,
        }
    }

    /// Runs a 600 KiB response body (in 100 KiB chunks) past a trace.
    async fn big_body(observer: Arc<Notes>) -> Vec<String> {
        let as_dyn: Arc<dyn ExchangeObserver> = observer.clone();
        let trace = Trace::start(Some(&as_dyn), 1, &head());
        let chunks = (0..6).map(|_| Ok::<_, ()>(Bytes::from(vec![0u8; 100 * 1024])));
        let tapped = trace.tap_response(stream::iter(chunks));
        assert_eq!(tapped.count().await, 6);
        trace.finish(None);
        let notes = observer.0.lock().unwrap().clone();
        notes
    }

    #[test]
    fn an_exchange_dropped_unfinished_is_handed_over_as_cancelled() {
        let notes = Arc::new(Notes(Mutex::default(), false));
        let as_dyn: Arc<dyn ExchangeObserver> = notes.clone();
        drop(Trace::start(Some(&as_dyn), 1, &head()));
        assert_eq!(*notes.0.lock().unwrap(), ["ended 0"]);
    }

    #[tokio::test]
    async fn a_live_observer_sees_a_body_move_a_step_at_a_time() {
        let notes = big_body(Arc::new(Notes(Mutex::default(), true))).await;
        assert_eq!(
            notes,
            [
                "started /big",
                "progress 307200",
                "progress 614400",
                "ended 614400"
            ]
        );
        // One that does not ask is told only the end.
        let notes = big_body(Arc::new(Notes(Mutex::default(), false))).await;
        assert_eq!(notes, ["ended 614400"]);
    }

    /// Keeps the exchange it is handed, headers captured.
    #[derive(Default)]
    struct Keeps(Mutex<Option<Exchange>>);

    impl ExchangeObserver for Keeps {
        fn capture(&self) -> Capture {
            Capture {
                headers: true,
                ..Capture::default()
            }
        }
        fn exchange(&self, e: Exchange) {
            *self.0.lock().unwrap() = Some(e);
        }
    }

    #[test]
    fn a_request_handed_over_is_taken_once_its_fields_first() {
        let keeps = Arc::new(Keeps::default());
        let as_dyn: Arc<dyn ExchangeObserver> = keeps.clone();
        let mut head = head();
        head.headers
            .push((Bytes::from_static(b"x-a"), Bytes::from_static(b"1")));
        let mut trace = Trace::start(Some(&as_dyn), 1, &head);
        trace.request_fields(&head);
        // Changed after the fields were taken: the copy taken stays.
        head.headers.clear();
        trace.request_done(head);
        trace.finish(None);
        let e = keeps.0.lock().unwrap().take().expect("handed over");
        assert_eq!(
            (&*e.host, &*e.method, &*e.uri),
            ("a.localhost", "GET", "/big")
        );
        let fields: Vec<_> = e.request_headers.iter().collect();
        assert_eq!(fields, [(&b"x-a"[..], &b"1"[..])]);
    }
}
