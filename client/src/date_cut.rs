//! The `date` field the HTTP client library writes into every request
//! head whose fields hold none, left out of what reaches the local service
//! (a proxy adds nothing end to end). The library writes it last, right
//! before the blank line, with a fixed length; the head is handed over
//! whole in its first write. A request without a body is that head alone,
//! so its end is known without a search.

use std::{cell::Cell, sync::LazyLock};

use memchr::memmem;

/// The length of the `date` line the client library writes: the name, an
/// IMF-fixdate (29 bytes) and CRLF.
const DATE_LINE: usize = 6 + 29 + 2;

/// One request's cut.
#[derive(Default)]
pub struct DateCut {
    /// Whether the caller sent no `date` (so the one in the head is not
    /// theirs).
    strip: bool,
    /// The request has no body: its first write is its head alone.
    bodiless: bool,
    /// Request bytes taken from the client library so far.
    taken: Cell<usize>,
    /// The line to drop: start and length in the request's bytes.
    cut: Cell<Option<(usize, usize)>>,
    planned: Cell<bool>,
}

/// How the next request bytes go out.
pub enum Step {
    /// As they are.
    Write,
    /// Without the `len` bytes at `at`, in one write: a head written in two
    /// would cost the service a second read.
    Cut(usize, usize),
}

impl DateCut {
    /// The cut for a request; `strip` when the caller sent no `date`,
    /// `bodiless` when no body follows its head.
    pub fn new(strip: bool, bodiless: bool) -> Self {
        DateCut {
            strip,
            bodiless,
            ..DateCut::default()
        }
    }

    /// How `buf` (the next request bytes) goes out.
    pub fn plan(&self, buf: &[u8]) -> Step {
        if !self.planned.replace(true) && self.strip {
            self.cut.set(date_line(buf, self.bodiless));
        }
        match self.cut.get() {
            Some((start, len)) => {
                let at = start.saturating_sub(self.taken.get()).min(buf.len());
                Step::Cut(at, len.min(buf.len() - at))
            }
            None => Step::Write,
        }
    }

    /// Records that `n` bytes of the request were taken, `dropped` of them
    /// the `date` line.
    pub fn took(&self, n: usize, dropped: bool) {
        self.taken.set(self.taken.get() + n);
        if dropped {
            self.cut.set(None);
        }
    }
}

/// The `date` line the client library appends to a head: the last line
/// before the blank one. `buf` starts with the head; with `bodiless`,
/// nothing follows the head.
fn date_line(buf: &[u8], bodiless: bool) -> Option<(usize, usize)> {
    // Each line ends with CRLF; the head with an empty one, the first.
    static HEAD_END: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));
    // No line of a head is empty but its last: a head alone that ends with
    // an empty line is whole, and ends there. Only a body after it (which
    // may hold anything) needs the search for the first empty line.
    let end = if bodiless && buf.ends_with(b"\r\n\r\n") {
        buf.len() - 2
    } else {
        HEAD_END.find(buf)? + 2
    };
    let start = end.checked_sub(DATE_LINE)?;
    let after_line = start >= 2 && &buf[start - 2..start] == b"\r\n";
    (after_line && buf[start..start + 6].eq_ignore_ascii_case(b"date: "))
        .then_some((start, DATE_LINE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] =
        b"GET / HTTP/1.1\r\nhost: a\r\ndate: Wed, 02 Dec 2026 00:22:19 GMT\r\n\r\nbody";

    #[test]
    fn the_added_line_is_found_and_a_callers_is_kept() {
        let cut = DateCut::new(true, false);
        let Step::Cut(at, len) = cut.plan(HEAD) else {
            panic!("no cut");
        };
        let mut out = HEAD[..at].to_vec();
        out.extend_from_slice(&HEAD[at + len..]);
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: a\r\n\r\nbody");
        assert!(matches!(DateCut::new(false, false).plan(HEAD), Step::Write));
    }

    #[test]
    fn a_bodiless_head_is_cut_where_a_search_would_cut_it() {
        let heads: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nhost: a\r\ndate: Wed, 02 Dec 2026 00:22:19 GMT\r\n\r\n",
            b"GET / HTTP/1.1\r\ndate: Wed, 02 Dec 2026 00:22:19 GMT\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nx-date: Wed, 02 Dec 2026 00:22:19 GMT\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        ];
        for head in heads {
            for len in 0..=head.len() {
                let part = &head[..len];
                assert_eq!(date_line(part, true), date_line(part, false), "{part:?}");
            }
        }
        assert!(date_line(heads[0], true).is_some());
        assert!(date_line(heads[2], true).is_none());
        // With a body, the first empty line ends the head, however much
        // the body looks like one.
        let mut with_body = heads[3].to_vec();
        with_body.extend_from_slice(&heads[0][16..]);
        assert_eq!(date_line(&with_body, false), None);
    }

    #[test]
    fn a_partial_write_keeps_the_cut_for_the_rest() {
        let cut = DateCut::new(true, false);
        let Step::Cut(at, _) = cut.plan(HEAD) else {
            panic!("no cut");
        };
        cut.took(5, false);
        let Step::Cut(rest, len) = cut.plan(&HEAD[5..]) else {
            panic!("cut lost");
        };
        assert_eq!((rest, len), (at - 5, DATE_LINE));
        cut.took(rest + len, true);
        assert!(matches!(cut.plan(&HEAD[at + len..]), Step::Write));
    }
}
