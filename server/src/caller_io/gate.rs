//! Where each request head starts on a caller's connection: the gate
//! follows the request stream (heads, `Content-Length` and chunked bodies)
//! so that every head is checked before the HTTP service reads it, and a
//! body is never taken for a head, whatever its bytes look like.

use super::check::{check, Framing, HeadProblem};

/// What the gate made of the bytes it was shown.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// All of them may pass.
    Passed,
    /// Those before the offset may pass; from it on they are the start of
    /// a head not yet complete: hold them, and show them again with more.
    Hold(usize),
    /// Those before the offset may pass; from it on they are a head the
    /// service would refuse, for this reason.
    Refuse(usize, HeadProblem),
}

/// Where the request stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a head.
    Head,
    /// In a body, with this many bytes left.
    Length(u64),
    /// In a chunked body.
    Chunked(Chunks),
    /// No more heads to find: an upgraded connection, or a chunked body
    /// the service will refuse (its own error then says so).
    Through,
}

/// Follows one connection's request stream.
#[derive(Debug)]
pub(crate) struct Gate {
    state: State,
}

impl Default for Gate {
    fn default() -> Self {
        Gate { state: State::Head }
    }
}

impl Gate {
    /// Follows `bytes`, the next of the connection; a held head is shown
    /// again from its start, with what came after it.
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> Scan {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match &mut self.state {
                State::Through => return Scan::Passed,
                State::Length(left) => {
                    let n = (*left).min(rest.len() as u64);
                    at += n as usize;
                    *left -= n;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(chunks) => match chunks.skip(rest) {
                    Ok(Some(used)) => {
                        at += used;
                        self.state = State::Head;
                    }
                    Ok(None) => return Scan::Passed,
                    Err(()) => self.state = State::Through,
                },
                State::Head => match check(rest) {
                    Ok(Some((len, framing))) => {
                        at += len;
                        self.state = match framing {
                            Framing::None => State::Head,
                            Framing::Length(n) => State::Length(n),
                            Framing::Chunked => State::Chunked(Chunks::default()),
                            Framing::Rest => State::Through,
                        };
                    }
                    Ok(None) => return Scan::Hold(at),
                    Err(problem) => return Scan::Refuse(at, problem),
                },
            }
        }
        Scan::Passed
    }
}

/// Where a chunked body is, byte by byte, by the service's own rules (so
/// that it ends where the service's decoder ends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Chunks {
    #[default]
    SizeFirst,
    Size(u64),
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: a trailer field, or the empty line.
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

impl Chunks {
    /// Skips what of `bytes` belongs to the body: `Some(used)` when the
    /// body ended after `used` bytes, `None` when all of them belong to it,
    /// an error where the service's decoder fails.
    fn skip(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
        let mut at = 0;
        while at < bytes.len() {
            if let Chunks::Data(left) = self {
                let n = (*left).min((bytes.len() - at) as u64);
                at += n as usize;
                *left -= n;
                if *left == 0 {
                    *self = Chunks::DataCr;
                }
                continue;
            }
            let done = self.step(bytes[at])?;
            at += 1;
            if done {
                return Ok(Some(at));
            }
        }
        Ok(None)
    }

    /// Takes one byte outside chunk data; `true` once the body is over.
    fn step(&mut self, b: u8) -> Result<bool, ()> {
        *self = match (*self, b) {
            (Chunks::SizeFirst, _) => Chunks::Size(hex(b).ok_or(())?),
            (Chunks::Size(n) | Chunks::SizeSpace(n), b'\r') => Chunks::SizeLf(n),
            (Chunks::Size(n) | Chunks::SizeSpace(n), b'\t' | b' ') => Chunks::SizeSpace(n),
            (Chunks::Size(n) | Chunks::SizeSpace(n), b';') => Chunks::Extension(n),
            (Chunks::Size(n), _) => {
                let digit = hex(b).ok_or(())?;
                Chunks::Size(n.checked_mul(16).ok_or(())? + digit)
            }
            (Chunks::Extension(n), b'\r') => Chunks::SizeLf(n),
            (Chunks::Extension(_), 0x00..=0x08 | 0x0a..=0x1f | 0x7f) => return Err(()),
            (Chunks::Extension(n), _) => Chunks::Extension(n),
            (Chunks::SizeLf(0), b'\n') => Chunks::EndCr,
            (Chunks::SizeLf(n), b'\n') => Chunks::Data(n),
            (Chunks::DataCr, b'\r') => Chunks::DataLf,
            (Chunks::DataLf, b'\n') => Chunks::SizeFirst,
            (Chunks::EndCr, b'\r') => Chunks::EndLf,
            (Chunks::Trailer, b'\r') => Chunks::TrailerLf,
            (Chunks::EndCr | Chunks::Trailer, _) => Chunks::Trailer,
            (Chunks::TrailerLf, b'\n') => Chunks::EndCr,
            (Chunks::EndLf, b'\n') => return Ok(true),
            _ => return Err(()),
        };
        Ok(false)
    }
}

/// The value of a hexadecimal digit.
fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What passes of `stream` when it arrives cut at `cuts`, held heads
    /// shown again with what follows, as the connection does; and the
    /// refusal, if any.
    fn run(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<HeadProblem>) {
        let mut gate = Gate::default();
        let (mut passed, mut held) = (Vec::new(), Vec::new());
        let mut from = 0;
        for &to in cuts.iter().chain([&stream.len()]) {
            held.extend_from_slice(&stream[from..to]);
            from = to;
            match gate.scan(&held) {
                Scan::Passed => passed.append(&mut held),
                Scan::Hold(at) => passed.extend(held.drain(..at)),
                Scan::Refuse(at, problem) => {
                    passed.extend_from_slice(&held[..at]);
                    return (passed, Some(problem));
                }
            }
        }
        (passed, None)
    }

    const LOOKALIKE: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n\
        GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";

    fn sized(body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn chunked(body: &[u8]) -> Vec<u8> {
        let mut out = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(7) {
            out.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        out
    }

    #[test]
    fn bodies_that_look_like_heads_pass_whole_at_every_cut() {
        let mut stream = sized(LOOKALIKE);
        stream.extend(chunked(LOOKALIKE));
        stream.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n");
        for cut in 0..=stream.len() {
            assert_eq!(run(&stream, &[cut]), (stream.clone(), None), "cut at {cut}");
        }
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(&stream, &every), (stream.clone(), None));
    }

    #[test]
    fn a_bad_head_after_good_requests_is_refused_where_it_starts() {
        let mut stream = sized(LOOKALIKE);
        let good = stream.len();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET / HTTP/1.1\r\n");
        for cut in 0..=stream.len() {
            let (passed, problem) = run(&stream, &[cut]);
            assert_eq!(passed, &stream[..good], "cut at {cut}");
            assert_eq!(problem, Some(HeadProblem::TwoHosts), "cut at {cut}");
        }
    }

    #[test]
    fn an_upgrade_passes_everything_after_it() {
        let mut stream =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
                .to_vec();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n\x81\x05hello");
        assert_eq!(run(&stream, &[10, 90]), (stream.clone(), None));
    }

    #[test]
    fn a_chunked_body_the_service_refuses_stops_the_gate() {
        let mut stream =
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert_eq!(run(&stream, &[]), (stream.clone(), None));
    }

    #[test]
    fn a_head_never_finished_is_held_until_too_large() {
        let mut gate = Gate::default();
        assert_eq!(gate.scan(b"GET / HTTP/1.1\r\nX: "), Scan::Hold(0));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(super::super::check::MAX_HEAD, b'a');
        assert_eq!(gate.scan(&long), Scan::Refuse(0, HeadProblem::TooLarge));
    }
}
