//! Strings: whether they need escaping, their escapes, and the escaped bytes read back for sorting.

/// [`write_str`](super::write_str); answers whether anything in `s` was escaped.
#[inline]
pub(super) fn write_string(out: &mut Vec<u8>, s: &str) -> bool {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let escaped = needs_escape(bytes);
    if escaped {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
    escaped
}

/// Whether `serde_json` would escape anything in `bytes`: a `"`, a `\` or a control character
/// (below 0x20). Eight bytes at a time.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `x` is zero (the classic test: exact as to whether any byte is).
    fn has_zero(x: u64) -> bool {
        x.wrapping_sub(ONES) & !x & HIGH != 0
    }
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        // A byte below 0x20 has its three high bits clear: `x & 0xe0..` has a zero byte.
        if has_zero(x & (0xe0 * ONES))
            || has_zero(x ^ (u64::from(b'"') * ONES))
            || has_zero(x ^ (u64::from(b'\\') * ONES))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The contents of a string with its escapes, without the quotes.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The bytes of a string written by [`write_escaped`], unescaped: what its keys are sorted by.
pub(super) struct Unescaped<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        if b != b'\\' {
            self.at += 1;
            return Some(b);
        }
        let (byte, len) = match self.bytes[self.at + 1] {
            b'b' => (0x08, 2),
            b't' => (0x09, 2),
            b'n' => (0x0a, 2),
            b'f' => (0x0c, 2),
            b'r' => (0x0d, 2),
            b'u' => {
                // `\u00xx`: only control characters are written so.
                let hex = |d: u8| match d {
                    b'0'..=b'9' => d - b'0',
                    _ => d - b'a' + 10,
                };
                (
                    hex(self.bytes[self.at + 4]) << 4 | hex(self.bytes[self.at + 5]),
                    6,
                )
            }
            other => (other, 2),
        };
        self.at += len;
        Some(byte)
    }
}
