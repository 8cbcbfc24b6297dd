//! Header fields as an observer keeps them: copied into one buffer, each
//! name and value behind its length, as the wire protocol encodes them.
//!
//! A record is made for every request while the inspector is on, on the
//! forwarding thread, and dropped later, mostly on the hub's thread. A list
//! of `Bytes` pairs cut from one shared buffer cost an allocation for the
//! list, one for the buffer, one for the buffer's shared count and a count
//! change per name and value, each undone on the other thread; here a
//! head's fields are one allocation of their size, freed as one block. A
//! response head's fields are copied as encoded for the tunnel, in one
//! piece ([`Fields::encoded`]).

use burrow_common::protocol::HeaderList;
use bytes::Bytes;

/// Header fields in order (a name may repeat), as one buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(Box<[u8]>);

/// Bytes before each name and each value: its length (`u16`, big-endian,
/// as in the wire protocol).
const LEN: usize = 2;

/// The most a thread's scratch buffer keeps between two heads.
const MAX_SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Fields {
    /// A copy of `fields`.
    pub fn copied<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Fields {
        // Written where the thread wrote the last head, then copied out at
        // its size: one allocation, and a kept record holds no slack.
        SCRATCH.with(|scratch| {
            let mut buffer = scratch.take();
            buffer.clear();
            for (name, value) in fields {
                for part in [name, value] {
                    // No longer part crosses the tunnel (its frame's length
                    // prefix is as wide): one could only be cut here.
                    let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
                    buffer.extend_from_slice(&len.to_be_bytes());
                    buffer.extend_from_slice(&part[..usize::from(len)]);
                }
            }
            let kept = Fields(buffer.as_slice().into());
            if buffer.capacity() <= MAX_SCRATCH {
                scratch.set(buffer);
            }
            kept
        })
    }

    /// A copy of fields as the wire protocol encodes them (see
    /// `burrow_common::frame::encoded_response_fields`).
    pub fn encoded(fields: &[u8]) -> Fields {
        Fields(fields.into())
    }

    /// A copy of `list`.
    pub fn of(list: &HeaderList) -> Fields {
        Fields::copied(list.iter().map(|(n, v)| (&n[..], &v[..])))
    }

    /// The fields, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(&self.0)
    }

    /// The fields as a list of their own.
    pub fn to_list(&self) -> HeaderList {
        self.iter()
            .map(|(n, v)| (Bytes::copy_from_slice(n), Bytes::copy_from_slice(v)))
            .collect()
    }

    /// The bytes of every name and value.
    pub fn size(&self) -> usize {
        self.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The fields of a [`Fields`], in order.
#[derive(Clone)]
pub struct Iter<'a>(&'a [u8]);

impl<'a> Iter<'a> {
    fn part(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<LEN>()?;
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (part, rest) = rest.split_at(len);
        self.0 = rest;
        Some(part)
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        Some((self.part()?, self.part()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_in_order_with_any_bytes() {
        let list: HeaderList = vec![
            (Bytes::from_static(b"x-a"), Bytes::from_static(b"1")),
            (Bytes::from_static(b"x-empty"), Bytes::new()),
            (
                Bytes::from_static(b"x-a"),
                Bytes::from_static(b"2\r\n\0\xff"),
            ),
            (Bytes::new(), Bytes::from_static(b"nameless")),
        ];
        let kept = Fields::of(&list);
        assert_eq!(kept.to_list(), list);
        assert_eq!(kept.iter().count(), 4);
        assert_eq!(kept.size(), 3 + 1 + 7 + 3 + 5 + 8);
        assert!(!kept.is_empty());
        assert!(Fields::default().is_empty());
        assert_eq!(Fields::default().iter().next(), None);
    }

    #[test]
    fn fields_as_encoded_for_the_tunnel_read_as_a_copy_of_them() {
        let fields: [(&[u8], &[u8]); 3] = [
            (b"content-type", b"text/plain"),
            (b"x-odd", b"a\r\nb\0"),
            (b"x-empty", b""),
        ];
        let frame = burrow_common::frame::encode_response_head_from(
            7,
            200,
            fields.iter().copied(),
            true,
            Some(b"hello"),
        )
        .expect("encodes");
        let wire = burrow_common::frame::encoded_response_fields(&frame, 5);
        let kept = Fields::encoded(wire);
        assert_eq!(kept, Fields::copied(fields.iter().copied()));
        assert_eq!(kept.iter().collect::<Vec<_>>(), fields);
    }
}
