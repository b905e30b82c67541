//! Sorting an object's members: scanning them again in the written bytes, and ordering their keys.

use std::cmp::Ordering;

use super::escape::Unescaped;

/// One member of an object being written: `"key":value` is `out[start..end]`, the key's contents
/// (escaped, without quotes) `out[start + 1..key_end - 1]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Member {
    pub(super) start: usize,
    pub(super) key_end: usize,
    pub(super) end: usize,
    /// Whether the key holds an escape (its bytes are then compared unescaped).
    pub(super) escaped: bool,
}

impl Member {
    fn key<'a>(&self, out: &'a [u8]) -> &'a [u8] {
        &out[self.start + 1..self.key_end - 1]
    }
}

/// The order of two members' keys: by the UTF-8 bytes of the keys themselves, not of their escapes.
pub(super) fn key_order(out: &[u8], a: &Member, b: &Member) -> Ordering {
    let (ka, kb) = (a.key(out), b.key(out));
    if a.escaped || b.escaped {
        Unescaped { bytes: ka, at: 0 }.cmp(Unescaped { bytes: kb, at: 0 })
    } else if ka.len() <= 16 && kb.len() <= 16 {
        // Most keys are short: compared in place rather than by a call to `memcmp`.
        for (x, y) in ka.iter().zip(kb) {
            if x != y {
                return x.cmp(y);
            }
        }
        ka.len().cmp(&kb.len())
    } else {
        ka.cmp(kb)
    }
}

/// The members of the object whose `{` is at `out[start]` and whose last member ends `out` (its `}`
/// not written yet), found again by scanning: this module's own compact output.
pub(super) fn scan_members(out: &[u8], start: usize, members: &mut Vec<Member>) {
    let mut at = start + 1;
    while at < out.len() {
        let (key_end, escaped) = skip_string(out, at);
        let end = skip_value(out, key_end + 1);
        members.push(Member {
            start: at,
            key_end,
            end,
            escaped,
        });
        at = end + 1;
    }
}

/// The end of the string that starts at `out[at]`, and whether it holds an escape.
fn skip_string(out: &[u8], at: usize) -> (usize, bool) {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        match out[i] {
            b'"' => return (i + 1, escaped),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
}

/// The end of the value that starts at `out[at]`.
fn skip_value(out: &[u8], at: usize) -> usize {
    match out[at] {
        b'"' => skip_string(out, at).0,
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match out[i] {
                    b'"' => {
                        i = skip_string(out, i).0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`.
        _ => out[at..]
            .iter()
            .position(|&b| b == b',')
            .map_or(out.len(), |n| at + n),
    }
}
