//! DER for the strict parser: the tags and OIDs it reads, a reader that accepts definite,
//! minimal lengths only, and writers that allocate each buffer once at its exact size (a
//! growing Vec would leave copies of secret bytes behind in freed memory).

use super::Mode;
use zeroize::Zeroizing;

/// rsaEncryption (1.2.840.113549.1.1.1), OID content bytes.
pub(super) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey (1.2.840.10045.2.1), OID content bytes.
pub(super) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const NULL: u8 = 0x05;
pub(super) const OID: u8 = 0x06;
pub(super) const CONTEXT_0: u8 = 0xa0;
pub(super) const CONTEXT_1: u8 = 0xa1;

/// A DER reader over one buffer: definite, minimal lengths only.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// The next TLV's tag and content.
    pub(super) fn any(&mut self, what: &str) -> Result<(u8, &'a [u8]), String> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let (&tag, rest) = rest
            .split_first()
            .ok_or_else(|| format!("{what} is missing"))?;
        let (&first, rest) = rest
            .split_first()
            .ok_or_else(|| format!("{what}: truncated length"))?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 {
                return Err(format!("{what}: indefinite length is not DER"));
            }
            if count > 3 {
                return Err(format!("{what}: a {count}-byte length is too long"));
            }
            let bytes = rest
                .get(..count)
                .ok_or_else(|| format!("{what}: truncated length"))?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if bytes[0] == 0 || len < 0x80 {
                return Err(format!("{what}: the length is not minimal (not DER)"));
            }
            (len, 2 + count)
        };
        let start = self.pos + header;
        let content = self
            .buf
            .get(start..start + len)
            .ok_or_else(|| format!("{what}: claims {len} bytes, fewer are present"))?;
        self.pos = start + len;
        Ok((tag, content))
    }

    /// The next TLV, which must carry `tag`.
    pub(super) fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let (got, content) = self.any(what)?;
        if got != tag {
            return Err(format!("{what} has tag 0x{got:02x}, 0x{tag:02x} expected"));
        }
        Ok(content)
    }

    /// An INTEGER's magnitude (big-endian, no sign byte), by `mode`'s rules.
    pub(super) fn integer(&mut self, what: &str, mode: Mode) -> Result<&'a [u8], String> {
        let content = self.expect(INTEGER, what)?;
        magnitude(content, what, mode)
    }

    /// Nothing may follow.
    pub(super) fn end(&self, what: &str) -> Result<(), String> {
        if self.done() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected byte(s) after {what}",
                self.buf.len() - self.pos
            ))
        }
    }
}

/// The magnitude of a non-negative INTEGER. Strict: minimal two's complement, never negative.
/// Lenient: the content read as an unsigned number.
fn magnitude<'a>(content: &'a [u8], what: &str, mode: Mode) -> Result<&'a [u8], String> {
    match content {
        [] => Err(format!("INTEGER {what} is empty")),
        [first, ..] if *first >= 0x80 && mode == Mode::Strict => Err(format!(
            "INTEGER {what} is negative: its top bit is set and the 0x00 sign byte DER requires is missing"
        )),
        [0, second, ..] if *second < 0x80 && mode == Mode::Strict => Err(format!(
            "INTEGER {what} is not minimal: a superfluous leading 0x00 byte"
        )),
        _ => {
            let first = content
                .iter()
                .position(|b| *b != 0)
                .unwrap_or(content.len());
            Ok(&content[first..])
        }
    }
}

/// `parts` joined into one buffer allocated once at its exact length.
pub(super) fn concat(parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

pub(super) fn strip_zeros(bytes: &[u8]) -> &[u8] {
    crate::hsm::host::strip_zeros(bytes)
}

/// A DER TLV, allocated once (no reallocation leaves a copy of the content behind).
pub(super) fn tlv(tag: u8, content: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = content.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len + 10));
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A minimal DER INTEGER of the non-negative magnitude `v` (no leading zeros; empty is 0).
pub(super) fn integer_tlv(v: &[u8]) -> Zeroizing<Vec<u8>> {
    tlv(INTEGER, &integer_content(v))
}

/// The minimal two's complement content of the non-negative magnitude `v`.
pub(super) fn integer_content(v: &[u8]) -> Zeroizing<Vec<u8>> {
    let v = strip_zeros(v);
    let mut content = Zeroizing::new(Vec::with_capacity(v.len() + 1));
    if v.first().is_none_or(|b| *b >= 0x80) {
        content.push(0);
    }
    content.extend_from_slice(v);
    content
}
