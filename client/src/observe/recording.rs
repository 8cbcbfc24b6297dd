//! The exchange being recorded for one stream, and what of its request
//! was taken into it.

use std::sync::Arc;

use burrow_common::protocol::RequestHead;

use super::{Capture, Exchange, ExchangeObserver, Fields};

/// One stream's record in the making, for its observer.
pub(super) struct Recording {
    pub(super) capture: Capture,
    pub(super) observer: Arc<dyn ExchangeObserver>,
    pub(super) exchange: Exchange,
    /// The request's host, method and target are in `exchange` (an empty
    /// host is a valid state before, so this cannot be read from it).
    pub(super) texts_taken: bool,
    /// Its header fields are, when captured.
    pub(super) fields_taken: bool,
}

impl Recording {
    pub(super) fn take_request(&mut self, head: &RequestHead) {
        self.take_fields(head);
        if !std::mem::replace(&mut self.texts_taken, true) {
            let e = &mut self.exchange;
            e.host = head.host.clone();
            e.method = head.method.clone();
            e.uri = head.uri.clone();
        }
    }

    pub(super) fn take_fields(&mut self, head: &RequestHead) {
        if self.capture.headers && !std::mem::replace(&mut self.fields_taken, true) {
            self.exchange.request_headers = Fields::of(&head.headers);
        }
    }

    /// Like [`Recording::take_request`], the texts moved, not copied.
    pub(super) fn take_request_from(&mut self, mut head: RequestHead) {
        self.take_fields(&head);
        if !std::mem::replace(&mut self.texts_taken, true) {
            let e = &mut self.exchange;
            e.host = std::mem::take(&mut head.host);
            e.method = std::mem::take(&mut head.method);
            e.uri = std::mem::take(&mut head.uri);
        }
    }
}
