//! The messages of an upgraded WebSocket connection, read off the bytes it
//! relays each way: the frames are followed as they pass (headers parsed,
//! client payloads unmasked), fragments joined into messages, and each
//! message kept with its kind, size, time and first bytes. Nothing is
//! changed or held back: the relay passes the bytes on as they came.
//!
//! Payloads of a connection that negotiated compression
//! (`permessage-deflate`) are kept as they travelled, marked compressed.

use std::time::Duration;

/// Most messages kept per connection; older ones are counted, not kept.
pub const MAX_MESSAGES: usize = 1000;

/// Most payload bytes kept per message.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKind {
    /// UTF-8 text.
    Text,
    /// Bytes.
    Binary,
    /// The close handshake.
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl WsKind {
    fn of(opcode: u8) -> Option<WsKind> {
        Some(match opcode {
            1 => WsKind::Text,
            2 => WsKind::Binary,
            8 => WsKind::Close,
            9 => WsKind::Ping,
            10 => WsKind::Pong,
            _ => return None,
        })
    }

    /// Its name in captures.
    pub fn name(self) -> &'static str {
        match self {
            WsKind::Text => "text",
            WsKind::Binary => "binary",
            WsKind::Close => "close",
            WsKind::Ping => "ping",
            WsKind::Pong => "pong",
        }
    }
}

/// One message, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    /// `true` from the caller to the local service.
    pub from_caller: bool,
    /// When its last frame began, from the exchange's start.
    pub at: Duration,
    /// What it is.
    pub kind: WsKind,
    /// Its whole payload size.
    pub size: u64,
    /// Its first payload bytes, up to [`MAX_MESSAGE_BYTES`].
    pub data: Vec<u8>,
    /// Sent compressed (`permessage-deflate`): `data` is as it travelled.
    pub compressed: bool,
}

/// The message being read off one direction.
#[derive(Default)]
struct Partial {
    kind: Option<WsKind>,
    size: u64,
    data: Vec<u8>,
    compressed: bool,
}

impl Partial {
    fn take(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        let room = MAX_MESSAGE_BYTES.saturating_sub(self.data.len());
        self.data.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }
}

/// Follows the frames of one direction of a connection.
pub struct FrameReader {
    from_caller: bool,
    /// A frame header being read (at most 14 bytes).
    head: Vec<u8>,
    /// Payload bytes left of the current frame.
    left: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes of the current frame read so far (for the mask).
    offset: usize,
    /// The current frame: its FIN bit, and whether it is a control frame.
    fin: bool,
    control: Option<Partial>,
    message: Partial,
    /// A frame that cannot be followed was seen: stop looking.
    lost: bool,
}

impl FrameReader {
    /// A reader of the frames the caller sends (`from_caller`) or the local
    /// service sends.
    pub fn new(from_caller: bool) -> Self {
        FrameReader {
            from_caller,
            head: Vec::with_capacity(14),
            left: 0,
            mask: None,
            offset: 0,
            fin: false,
            control: None,
            message: Partial::default(),
            lost: false,
        }
    }

    /// Reads `bytes`, handing each whole message to `done` with `at`.
    pub fn feed(&mut self, mut bytes: &[u8], at: Duration, done: &mut impl FnMut(WsMessage)) {
        while !bytes.is_empty() && !self.lost {
            if self.left == 0 {
                let used = self.read_head(bytes, at, done);
                bytes = &bytes[used..];
                continue;
            }
            let n = (self.left.min(bytes.len() as u64)) as usize;
            let mut piece = bytes[..n].to_vec();
            if let Some(mask) = self.mask {
                for (i, b) in piece.iter_mut().enumerate() {
                    *b ^= mask[(self.offset + i) % 4];
                }
            }
            self.offset += n;
            self.left -= n as u64;
            match &mut self.control {
                Some(c) => c.take(&piece),
                None => self.message.take(&piece),
            }
            bytes = &bytes[n..];
            if self.left == 0 {
                self.end_frame(at, done);
            }
        }
    }

    /// Reads header bytes; returns how many of `bytes` it took.
    fn read_head(&mut self, bytes: &[u8], at: Duration, done: &mut impl FnMut(WsMessage)) -> usize {
        let mut used = 0;
        while used < bytes.len() {
            self.head.push(bytes[used]);
            used += 1;
            if let Some(len) = self.header_len() {
                if self.head.len() == len {
                    self.start_frame(at, done);
                    break;
                }
            }
        }
        used
    }

    /// The length of the header being read, once its first two bytes are in.
    fn header_len(&self) -> Option<usize> {
        let second = *self.head.get(1)?;
        let masked = if second & 0x80 != 0 { 4 } else { 0 };
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        Some(2 + extended + masked)
    }

    fn start_frame(&mut self, at: Duration, done: &mut impl FnMut(WsMessage)) {
        let h = std::mem::take(&mut self.head);
        let (first, second) = (h[0], h[1]);
        let (len, rest) = match second & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), &h[4..]),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(n), &h[10..])
            }
            n => (u64::from(n), &h[2..]),
        };
        self.mask = (second & 0x80 != 0).then(|| [rest[0], rest[1], rest[2], rest[3]]);
        self.offset = 0;
        self.left = len;
        self.fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        if opcode >= 8 {
            self.control = Some(Partial {
                kind: WsKind::of(opcode),
                ..Partial::default()
            });
        } else if opcode != 0 {
            self.message = Partial {
                kind: WsKind::of(opcode),
                compressed: first & 0x40 != 0,
                ..Partial::default()
            };
        }
        if self.message.kind.is_none() && self.control.is_none() {
            // A continuation with no message begun, or an unknown opcode.
            self.lost = true;
            return;
        }
        if len == 0 {
            self.end_frame(at, done);
        }
    }

    fn end_frame(&mut self, at: Duration, done: &mut impl FnMut(WsMessage)) {
        let whole = match self.control.take() {
            Some(control) => Some(control),
            None if self.fin => Some(std::mem::take(&mut self.message)),
            None => None,
        };
        if let Some(Partial {
            kind: Some(kind),
            size,
            data,
            compressed,
        }) = whole
        {
            done(WsMessage {
                from_caller: self.from_caller,
                at,
                kind,
                size,
                data,
                compressed,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client (masked) or a server sends it.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n < 65536 => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[test]
    fn messages_are_read_whole_however_the_bytes_are_cut() {
        let k = Some([1, 2, 3, 4]);
        let big = vec![7u8; 70_000];
        let mut bytes = frame(true, 1, b"hello", k);
        bytes.extend(frame(false, 2, &big[..30_000], k));
        bytes.extend(frame(true, 9, b"ping!", k));
        bytes.extend(frame(true, 0, &big[30_000..], k));
        bytes.extend(frame(true, 8, &[3, 232], k));
        for cut in [1, 2, 3, 7, 100, 4096, bytes.len()] {
            let mut reader = FrameReader::new(true);
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                reader.feed(piece, Duration::ZERO, &mut |m| got.push(m));
            }
            let kinds: Vec<(WsKind, u64)> = got.iter().map(|m| (m.kind, m.size)).collect();
            assert_eq!(
                kinds,
                [
                    (WsKind::Text, 5),
                    (WsKind::Ping, 5),
                    (WsKind::Binary, 70_000),
                    (WsKind::Close, 2)
                ],
                "cut {cut}"
            );
            assert_eq!(got[0].data, b"hello");
            assert_eq!(got[1].data, b"ping!");
            assert_eq!(got[2].data.len(), MAX_MESSAGE_BYTES);
            assert!(got[2].data.iter().all(|b| *b == 7));
        }
    }

    #[test]
    fn a_server_frame_is_unmasked_and_garbage_stops_the_reader() {
        let mut reader = FrameReader::new(false);
        let mut got = Vec::new();
        reader.feed(&frame(true, 1, b"hi", None), Duration::ZERO, &mut |m| {
            got.push(m)
        });
        assert_eq!(got.len(), 1);
        assert!(!got[0].from_caller);
        reader.feed(&[0x80, 0x01, b'x'], Duration::ZERO, &mut |m| got.push(m));
        reader.feed(&frame(true, 1, b"hi", None), Duration::ZERO, &mut |m| {
            got.push(m)
        });
        assert_eq!(got.len(), 1, "a continuation of nothing stops the reading");
    }
}
