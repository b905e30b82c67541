//! Text from the store made safe to print on a terminal.
//!
//! Records, keys, messages, notes, operator names and payloads are written by agents and operators;
//! printed raw, an escape sequence among them could retitle the window, move the cursor, recolour or
//! overwrite earlier lines (a fake `ok: … verified`), and a bidi override could make text read
//! differently from what it is. Every text output for a person passes stored text through [`escape`];
//! `--json` output is escaped by JSON instead.

use std::borrow::Cow;

/// Whether `c` is shown escaped: C0 controls (newline, tab and carriage return included), DEL, C1
/// controls (U+0080–U+009F), and the bidi embedding, override and isolate characters (U+202A–U+202E,
/// U+2066–U+2069).
pub fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character of [`needs_escape`] written visibly: `\n`, `\r`, `\t`, `\0`, `\x1b`
/// (other C0 controls and DEL), `\u{9b}` (C1 controls), `\u{202e}` (bidi). Everything else, other
/// scripts and a backslash included, is kept as it is. The result is one line.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// `text` escaped line by line: its newlines kept, everything else of [`escape`] escaped. For text
/// whose lines are part of the layout (an error message, a report).
pub fn escape_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if (c as u32) < 0x80 && needs_escape(c) => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_only() {
        assert_eq!(
            escape("\u{1b}]0;pwned\u{7}\u{1b}[32mok\r\n\t\0\u{7f}"),
            "\\x1b]0;pwned\\x07\\x1b[32mok\\r\\n\\t\\0\\x7f"
        );
        assert_eq!(escape("a\u{9b}b\u{85}"), "a\\u{9b}b\\u{85}");
        assert_eq!(
            escape("\u{202a}\u{202e}txt.exe\u{2066}\u{2069}"),
            "\\u{202a}\\u{202e}txt.exe\\u{2066}\\u{2069}"
        );
        assert!(matches!(escape("café Ω 日本 \\x1b"), Cow::Borrowed(_)));
        assert_eq!(escape_lines("one\u{1b}\ntwo\r"), "one\\x1b\ntwo\\r");
    }
}
