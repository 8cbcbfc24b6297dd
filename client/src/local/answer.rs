//! A local service's answer: its status and fields (hop-by-hop fields left
//! out, the tunnel's response rules applied) and its body as a stream that
//! ends with an error when the service cut it short.
//!
//! Most answers are read by the pooled HTTP client; a few come off a raw
//! connection (one given before the request was written, one the pooled
//! client could not read). Both look the same from outside. The pooled
//! one's fields are read straight from the client library's map: no copy
//! unless the tunnel's rules change them.

use std::{pin::Pin, rc::Rc};

use actix_http::header::{map::Iter as MapIter, HeaderMap};
use awc::{
    http::header::{CONNECTION, CONTENT_LENGTH},
    ClientResponse,
};
use burrow_common::{
    headers::{find, strip_hop_by_hop, HopByHop},
    http1::{parse_content_length, status_has_no_body},
    ResetCode,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncRead;

use crate::{
    config::TunnelConfig,
    failure::StreamFailure,
    http1::{dechunk, limit, read_stream, ResponseStart},
    local_io::Exchange,
    whole::{Framing, Whole},
};

/// A body as it comes from the local service; an error says how it broke.
pub type AnswerBody = Pin<Box<dyn Stream<Item = Result<Bytes, String>>>>;

/// The answer of a local service to one request.
pub struct Answer {
    inner: Inner,
    status: u16,
    length: Option<u64>,
    is_head: bool,
}

enum Inner {
    /// Read by the pooled client.
    Pooled {
        resp: ClientResponse,
        /// The fields after the tunnel's rules, when it has any.
        changed: Option<HeaderMap>,
        rule: HopByHop,
        /// The call whose connection carries the body (none for a request
        /// sent again on a connection of its own).
        own: Option<Rc<Exchange>>,
    },
    /// Read from a connection of its own.
    Raw {
        start: ResponseStart,
        rd: Box<dyn AsyncRead + Unpin>,
        chunked: bool,
    },
}

impl Answer {
    pub(super) fn pooled(
        resp: ClientResponse,
        tunnel: &TunnelConfig,
        is_head: bool,
        own: Option<Rc<Exchange>>,
    ) -> Self {
        let length = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| parse_content_length(v.as_bytes()));
        let changed = tunnel.headers.as_deref().map(|rules| {
            let mut copy = resp.headers().clone();
            rules.response.apply(&mut copy);
            copy
        });
        let map = changed.as_ref().unwrap_or(resp.headers());
        let rule = HopByHop::new(map.get_all(CONNECTION).map(|v| v.as_bytes()));
        Answer {
            status: resp.status().as_u16(),
            length,
            is_head,
            inner: Inner::Pooled {
                resp,
                changed,
                rule,
                own,
            },
        }
    }

    /// An answer read off a raw connection, `start` with the tunnel's
    /// response rules applied.
    pub(crate) fn raw(
        mut start: ResponseStart,
        rd: Box<dyn AsyncRead + Unpin>,
        is_head: bool,
    ) -> Self {
        let chunked = find(&start.headers, b"transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with(b"chunked"));
        strip_hop_by_hop(&mut start.headers);
        let length = find(&start.headers, b"content-length").and_then(|v| parse_content_length(v));
        Answer {
            status: start.status,
            length,
            is_head,
            inner: Inner::Raw { start, rd, chunked },
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body's `Content-Length`, when it gave one.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// `true` when no body follows the head (an answer to HEAD, a length
    /// of 0, a status that has none).
    pub fn ends_here(&self) -> bool {
        self.is_head || self.length == Some(0) || status_has_no_body(self.status)
    }

    /// The fields to pass on: hop-by-hop ones left out, the tunnel's
    /// response rules applied.
    pub fn fields(&self) -> Fields<'_> {
        match &self.inner {
            Inner::Pooled {
                resp,
                changed,
                rule,
                ..
            } => Fields::Map(changed.as_ref().unwrap_or(resp.headers()).iter(), rule),
            Inner::Raw { start, .. } => Fields::List(start.headers.iter()),
        }
    }

    /// The whole body, of `len` bytes, read now, when it can be (an answer
    /// the pooled client reads); `None` when it must be streamed.
    pub async fn read_whole(
        &mut self,
        len: usize,
        local: &str,
    ) -> Result<Option<Bytes>, StreamFailure> {
        let Inner::Pooled { resp, .. } = &mut self.inner else {
            return Ok(None);
        };
        let failed = |what: String| StreamFailure::new(ResetCode::LocalError, what);
        let body = resp
            .body()
            .limit(len)
            .await
            .map_err(|e| failed(format!("response body from {local} failed: {e}")))?;
        if body.len() != len {
            let got = body.len();
            return Err(failed(format!("{local} sent {got} of {len} body bytes")));
        }
        Ok(Some(body))
    }

    /// The body, as the service sends it; it ends with an error when the
    /// service cut it short.
    pub fn body(self) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        match self.inner {
            Inner::Pooled { resp, own, .. } => {
                let framing = Framing::of(resp.headers(), self.length);
                Whole::new(resp, framing, own).left_stream()
            }
            Inner::Raw { start, rd, chunked } => {
                let body = read_stream(start.rest, rd);
                let body: AnswerBody = match (chunked, self.length) {
                    (true, _) => Box::pin(dechunk(body).map(|r| r.map_err(|e| e.to_string()))),
                    (false, Some(n)) => {
                        Box::pin(limit(body, n).map(|r| r.map_err(|e| e.to_string())))
                    }
                    (false, None) => Box::pin(body.map(|r| r.map_err(|e| e.to_string()))),
                };
                body.right_stream()
            }
        }
    }
}

/// The fields of an [`Answer`], as borrowed name and value pairs.
pub enum Fields<'a> {
    /// From the client library's map, hop-by-hop ones skipped.
    Map(MapIter<'a>, &'a HopByHop),
    /// From a parsed head (already without them).
    List(std::slice::Iter<'a, (Bytes, Bytes)>),
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Fields::Map(iter, rule) => iter
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                .find(|(n, _)| rule.forwards(n)),
            Fields::List(iter) => iter.next().map(|(n, v)| (&n[..], &v[..])),
        }
    }
}
