//! The byte-level pieces of the compact record layout ([`super::codec`]):
//! LEB128 varints, zigzag for signed values, and text stored smaller when
//! it is a Herald id (its prefix as a code and its ULID's 16 bytes) or a
//! decimal number (a varint). A retained delivery is mostly ids and
//! numbers, so this is where its bytes go.
//!
//! Text forms, told apart by the two low bits of the leading varint:
//! `0` bytes (length above them), `1` id (prefix code above them, then 16
//! bytes, big-endian), `2` decimal number (the varint that follows). Only a
//! value that spells back exactly the same takes the id or number form.

use herald_common::ids;

/// Id prefixes by code. Stored records name them by position: append
/// only, never reorder.
const ID_PREFIXES: [&str; 7] =
    [ids::DELIVERY, ids::ENDPOINT, ids::EVENT, ids::GENERATION, ids::SUBSCRIPTION, ids::API_KEY, ids::PORTAL_SESSION];

const TEXT_BYTES: u64 = 0;
const TEXT_ID: u64 = 1;
const TEXT_NUMBER: u64 = 2;

/// Builds one compact value.
#[derive(Default)]
pub struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    pub fn with_capacity(capacity: usize) -> Self {
        Encoder { out: Vec::with_capacity(capacity) }
    }

    pub fn byte(&mut self, value: u8) {
        self.out.push(value);
    }

    pub fn uint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    pub fn int(&mut self, value: i64) {
        self.uint(((value << 1) ^ (value >> 63)) as u64);
    }

    pub fn fixed_u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn text(&mut self, value: &str) {
        if let Some((code, bits)) = as_id(value) {
            self.uint((code << 2) | TEXT_ID);
            self.out.extend_from_slice(&bits.to_be_bytes());
        } else if let Some(number) = as_number(value) {
            self.uint(TEXT_NUMBER);
            self.uint(number);
        } else {
            self.uint(((value.len() as u64) << 2) | TEXT_BYTES);
            self.out.extend_from_slice(value.as_bytes());
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads one compact value front to back; every read is `None` past the
/// end or on bytes no encoder writes.
pub struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Decoder { rest: raw }
    }

    pub fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let rest = self.rest;
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    pub fn uint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    pub fn int(&mut self) -> Option<i64> {
        let raw = self.uint()?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    pub fn fixed_u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub fn text(&mut self) -> Option<String> {
        let tag = self.uint()?;
        match tag & 3 {
            TEXT_BYTES => {
                let len = usize::try_from(tag >> 2).ok()?;
                String::from_utf8(self.take(len)?.to_vec()).ok()
            }
            TEXT_ID => {
                let prefix = ID_PREFIXES.get(usize::try_from(tag >> 2).ok()?)?;
                let bits = u128::from_be_bytes(self.take(16)?.try_into().ok()?);
                Some(ids::id_from_bits(prefix, bits))
            }
            TEXT_NUMBER => Some(self.uint()?.to_string()),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// The prefix code and ULID of a canonical Herald id: its prefix, then 26
/// lowercase Crockford base32 digits whose first is at most `7` (so they
/// hold 128 bits), which is the one spelling [`ids::id_from_bits`] gives.
/// Read digit by digit, as every state written goes through here.
fn as_id(value: &str) -> Option<(u64, u128)> {
    let (code, prefix) = ID_PREFIXES.iter().enumerate().find(|(_, p)| value.starts_with(**p))?;
    let bits = ids::canonical_ulid_bits(&value.as_bytes()[prefix.len()..])?;
    Some((code as u64, bits))
}

/// A decimal number spelled without a sign or leading zeros.
fn as_number(value: &str) -> Option<u64> {
    let canonical = !value.is_empty()
        && value.len() <= 19
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    canonical.then(|| value.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> usize {
        let mut encoder = Encoder::default();
        encoder.text(text);
        let raw = encoder.finish();
        let mut decoder = Decoder::new(&raw);
        assert_eq!(decoder.text().as_deref(), Some(text));
        assert!(decoder.is_empty());
        raw.len()
    }

    #[test]
    fn text_reads_back_in_every_form() {
        let id = ids::new_id(ids::ENDPOINT);
        assert_eq!(round_trip(&id), 17, "an id is its code and 16 bytes");
        assert_eq!(round_trip("1796133400"), 6);
        for other in ["", "0", "007", "acme", "ep_1", "ep_01M8RY9BN5091X3DBN2JMV2QDV", "18446744073709551616", "ünï"]
        {
            assert_eq!(round_trip(other), other.len() + 1, "{other}");
        }
        let upper_after_prefix = format!("{}{}", ids::EVENT, "01m8ry9bqs9h9d9hw6b7j3w6nS");
        round_trip(&upper_after_prefix);
    }

    #[test]
    fn ids_are_read_as_the_id_module_reads_them() {
        for _ in 0..100 {
            let id = ids::new_delivery_id(7);
            assert_eq!(as_id(&id), Some((0, ids::ulid_bits(&id).unwrap())));
        }
        let id = ids::new_id(ids::ENDPOINT);
        for other in [
            id.to_uppercase(),
            id.replace(|c: char| c.is_ascii_digit(), "i"),
            format!("ep_8{}", &id[4..]),
            format!("{id}0"),
            id[..id.len() - 1].to_owned(),
        ] {
            assert_eq!(as_id(&other), None, "{other}");
        }
        assert_eq!(as_id("ep_7zzzzzzzzzzzzzzzzzzzzzzzzz"), Some((1, u128::MAX)));
    }

    #[test]
    fn numbers_read_back_at_their_edges() {
        let mut encoder = Encoder::default();
        for value in [0, 1, -1, i64::MIN, i64::MAX, 1_796_133_400_638] {
            encoder.int(value);
        }
        encoder.uint(u64::MAX);
        encoder.fixed_u64(0x0a1b_2c3d_4e5f_6071);
        let raw = encoder.finish();
        let mut decoder = Decoder::new(&raw);
        for value in [0, 1, -1, i64::MIN, i64::MAX, 1_796_133_400_638] {
            assert_eq!(decoder.int(), Some(value));
        }
        assert_eq!(decoder.uint(), Some(u64::MAX));
        assert_eq!(decoder.fixed_u64(), Some(0x0a1b_2c3d_4e5f_6071));
        assert!(decoder.is_empty());
    }

    #[test]
    fn truncated_or_foreign_bytes_read_as_nothing() {
        assert_eq!(Decoder::new(&[0x80]).uint(), None);
        assert_eq!(Decoder::new(&[0xff; 11]).uint(), None);
        assert_eq!(Decoder::new(&[(3 << 2) | 1, 0, 0]).text(), None, "an id cut short");
        assert_eq!(Decoder::new(&[(40 << 2) | 1]).text(), None, "an unknown prefix code");
        assert_eq!(Decoder::new(&[3]).text(), None, "an unknown text form");
        assert_eq!(Decoder::new(&[(2 << 2), 0xff, 0xfe]).text(), None, "bytes that are not UTF-8");
    }
}
