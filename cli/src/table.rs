//! Plain-text tables for people: left-aligned columns, two spaces apart, long cells cut with `…`.
//! Every cell is escaped ([`crate::display::escape`]) before it is measured and laid out.

use crate::display::escape;

/// A table being filled.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column), each cell escaped: a control or bidi character in stored
    /// text is shown as `\x1b`, `\u{202e}`, ... and counted at that width.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| match escape(&c) {
                    std::borrow::Cow::Borrowed(_) => c,
                    std::borrow::Cow::Owned(e) => e,
                })
                .collect(),
        );
    }

    /// The table as text, one line per row, each ending in a newline; the last column is not padded.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` escaped ([`escape`]: on one line, controls shown) and cut to `max` characters (the last
/// one `…`).
pub fn cut(text: &str, max: usize) -> String {
    let one_line = escape(text);
    if one_line.chars().count() <= max {
        return one_line.into_owned();
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The short form of a run id shown in tables: its last 8 hex digits (the random part of a UUIDv7;
/// the first digits are the start time, shared by runs started close together).
pub fn short_run(id: &uuid::Uuid) -> String {
    let s = id.simple().to_string();
    s[s.len() - 8..].to_owned()
}
