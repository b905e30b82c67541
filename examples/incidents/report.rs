//! What every incident prints and checks: its lines, its row of the summary, and the guarded numbers
//! that are not what actguard promises.

use std::fmt::Display;

use actguard::ActionError;

/// One line of an incident, indented under its heading.
pub fn say(line: impl Display) {
    println!("  {line}");
}

/// A downstream's answer, as a line shows it.
pub fn outcome<T: std::fmt::Debug, E: Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// A guarded call's result in a few words: `ok` or the error.
pub fn short<T, E: Display>(r: &Result<T, ActionError<E>>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// One line of the summary: the unguarded result, and the guarded numbers.
pub struct Row {
    pub incident: &'static str,
    pub unguarded: String,
    pub effects: u64,
    pub duplicates: u64,
    pub skips: u64,
    pub queued: String,
    pub halt: &'static str,
    pub reverted: String,
    pub note: String,
}

/// The guarded numbers that were not what actguard promises.
#[derive(Default)]
pub struct Checks {
    pub failed: Vec<String>,
}

impl Checks {
    /// Records `what` as wrong, and prints it, if `got` is not `want`.
    pub fn expect<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            let line = format!("{what}: got {got:?}, expected {want:?}");
            println!("  CHECK FAILED {line}");
            self.failed.push(line);
        }
    }
}

/// The numbered title an incident starts with.
pub fn heading(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

/// The table after the incidents: one row each.
pub fn summary(rows: &[Row]) {
    let header = [
        "incident",
        "unguarded result",
        "effects",
        "dups",
        "skips",
        "queue entries",
        "halt",
        "reverted",
        "guarded: also",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.incident.to_owned(),
                r.unguarded.clone(),
                r.effects.to_string(),
                r.duplicates.to_string(),
                r.skips.to_string(),
                r.queued.clone(),
                r.halt.to_owned(),
                r.reverted.clone(),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    println!("\nSummary (columns after \"unguarded result\" are the guarded run's):\n");
    println!("{}", line(&header.map(str::to_owned)));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        println!("{}", line(row));
    }
}
