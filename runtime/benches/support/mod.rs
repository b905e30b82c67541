//! A small benchmark harness shared by the `cargo bench` targets.
//!
//! The usual frameworks (criterion, divan) pull a second major version of `syn` into the build; this
//! one does what the benchmarks need and nothing else: it times each case in alternating rounds, so
//! every case sees the same machine load (these machines are shared and noisy), and reports the
//! median, the spread and the ratio to a baseline measured in the same run.
//!
//! `ACTGUARD_BENCH_ROUNDS` overrides the number of rounds (default 15); `ACTGUARD_BENCH_QUICK=1` runs
//! 3 short rounds, enough to check that a benchmark works.

#![allow(dead_code)] // each bench target uses part of it

use std::time::{Duration, Instant};

/// One case: a name and a function that runs `n` iterations and returns how long they took.
pub struct Case<'a> {
    /// Shown in the table.
    pub name: String,
    /// Runs `n` iterations, returns the elapsed time of those iterations only.
    pub run: Box<dyn FnMut(u64) -> Duration + 'a>,
}

impl<'a> Case<'a> {
    /// A case timing `f` over `n` iterations.
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) -> Duration + 'a) -> Self {
        Case {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// What was measured for one case.
#[derive(Debug, Clone)]
pub struct Stat {
    /// The case's name.
    pub name: String,
    /// Median time per iteration over the rounds, in nanoseconds.
    pub median_ns: f64,
    /// Fastest round, ns per iteration.
    pub min_ns: f64,
    /// Slowest round, ns per iteration.
    pub max_ns: f64,
}

impl Stat {
    /// Iterations per second at the median.
    pub fn per_second(&self) -> f64 {
        1e9 / self.median_ns
    }
}

/// Rounds to run: `ACTGUARD_BENCH_ROUNDS`, 3 when `ACTGUARD_BENCH_QUICK` is set, else `default`.
pub fn rounds(default: usize) -> usize {
    if std::env::var_os("ACTGUARD_BENCH_QUICK").is_some() {
        return 3;
    }
    std::env::var("ACTGUARD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether `cargo bench` was given a filter that excludes `group` (`cargo bench -- overhead`).
pub fn filtered_out(group: &str) -> bool {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    !args.is_empty() && !args.iter().any(|a| group.contains(a.as_str()))
}

/// Picks an iteration count so one round of `case` takes about `target`.
pub fn calibrate(case: &mut Case<'_>, target: Duration) -> u64 {
    let mut n = 1u64;
    loop {
        let took = (case.run)(n);
        if took >= target / 4 || n >= 1 << 30 {
            let per = took.as_secs_f64() / n as f64;
            return ((target.as_secs_f64() / per.max(1e-12)) as u64).max(1);
        }
        n *= 4;
    }
}

/// Runs every case for `rounds` rounds, alternating between cases within each round, each round of a
/// case lasting about `round_time`. Returns one [`Stat`] per case, in order.
pub fn compare(cases: &mut [Case<'_>], rounds: usize, round_time: Duration) -> Vec<Stat> {
    let iters: Vec<u64> = cases
        .iter_mut()
        .map(|c| {
            // Warm up (caches, allocator, lazily built state), then calibrate.
            (c.run)(1);
            calibrate(c, round_time)
        })
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, c) in cases.iter_mut().enumerate() {
            let took = (c.run)(iters[i]);
            samples[i].push(took.as_nanos() as f64 / iters[i] as f64);
        }
    }
    cases
        .iter()
        .zip(samples)
        .map(|(c, mut s)| {
            s.sort_by(|a, b| a.total_cmp(b));
            Stat {
                name: c.name.clone(),
                median_ns: s[s.len() / 2],
                min_ns: s[0],
                max_ns: s[s.len() - 1],
            }
        })
        .collect()
}

/// Times `n` iterations of a synchronous closure.
pub fn time(n: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed()
}

/// Formats nanoseconds for people: `812 ns`, `11.3 µs`, `2.40 ms`.
pub fn human_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

/// Prints a table of per-iteration times with the ratio of each case to `stats[baseline]`.
pub fn print_times(title: &str, stats: &[Stat], baseline: usize) {
    println!("\n{title}");
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>10}",
        "case", "median", "min", "max", "ratio"
    );
    for s in stats {
        println!(
            "{:<34} {:>12} {:>12} {:>12} {:>9.2}x",
            s.name,
            human_ns(s.median_ns),
            human_ns(s.min_ns),
            human_ns(s.max_ns),
            s.median_ns / stats[baseline].median_ns
        );
    }
}

/// Prints a table of throughputs (iterations per second) with the ratio of each case to
/// `stats[baseline]`.
pub fn print_throughput(title: &str, stats: &[Stat], baseline: usize, unit: &str) {
    println!("\n{title}");
    println!(
        "{:<34} {:>14} {:>14} {:>14} {:>10}",
        "case",
        format!("{unit}/s"),
        "slowest round",
        "fastest round",
        "ratio"
    );
    for s in stats {
        println!(
            "{:<34} {:>14.0} {:>14.0} {:>14.0} {:>9.2}x",
            s.name,
            s.per_second(),
            1e9 / s.max_ns,
            1e9 / s.min_ns,
            s.per_second() / stats[baseline].per_second()
        );
    }
}
