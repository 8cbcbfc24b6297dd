//! A bounds-checked reader over a frame's payload.

use bytes::{Buf, Bytes};

use super::DecodeError;
use crate::protocol::HeaderList;

/// Field reader over a frame payload; every read is bounds-checked.
pub(super) struct Reader {
    buf: Bytes,
    kind: &'static str,
}

impl Reader {
    /// A reader over the payload of a frame of kind `kind`.
    pub(super) fn new(buf: Bytes, kind: &'static str) -> Self {
        Reader { buf, kind }
    }

    /// Everything not read yet.
    pub(super) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn truncated(&self, field: &'static str) -> DecodeError {
        DecodeError::Truncated {
            kind: self.kind,
            field,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(self.truncated(field));
        }
        Ok(self.buf.split_to(n))
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u8())
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u16())
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u32())
    }

    /// The flags byte, refusing bits outside `known`.
    pub(super) fn flags(&mut self, known: u8) -> Result<u8, DecodeError> {
        let flags = self.u8("flags")?;
        if flags & !known != 0 {
            return Err(DecodeError::UnknownFlags {
                kind: self.kind,
                flags,
            });
        }
        Ok(flags)
    }

    pub(super) fn text(&mut self, len: usize, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8 {
            kind: self.kind,
            field,
        })
    }

    pub(super) fn text8(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u8(field)? as usize;
        self.text(len, field)
    }

    pub(super) fn text16(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(field)? as usize;
        self.text(len, field)
    }

    pub(super) fn headers(&mut self) -> Result<HeaderList, DecodeError> {
        let count = self.u16("header count")? as usize;
        // Each header needs at least 4 bytes: do not trust `count` for the allocation.
        let mut headers = Vec::with_capacity(count.min(self.buf.len() / 4));
        for _ in 0..count {
            let n = self.u16("header name length")? as usize;
            let name = self.take(n, "header name")?;
            let v = self.u16("header value length")? as usize;
            let value = self.take(v, "header value")?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, DecodeError> {
        serde_json::from_slice(&self.buf).map_err(|e| DecodeError::InvalidJson {
            kind: self.kind,
            detail: e.to_string(),
        })
    }

    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.kind, self.buf.len()))
        }
    }
}
