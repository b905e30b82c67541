//! What `#[agent_action]` costs at compile time: generates two crates of 200 functions each, one with
//! the attribute on every function and one with the same functions without it, builds the
//! dependencies once, then rebuilds only the generated crates (non-incremental, debug profile, as
//! `cargo build` in a fresh checkout would), alternating between the two, and reports the median of
//! each and the difference per action.
//!
//! `cargo bench -p actguard --bench compile_time` (the crates are written under
//! `target/compile-time-bench/`). Set `COMPILE_TIME_ROUNDS` to change the number of rounds (5).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ACTIONS: usize = 200;

/// The two variants: same functions, same types, with and without the attribute.
const VARIANTS: [(&str, bool); 2] = [("gen_plain", false), ("gen_guarded", true)];

fn manifest(name: &str, actguard: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
actguard = {{ path = "{}", default-features = false }}
serde = {{ version = "1", features = ["derive"] }}
thiserror = "2"
"#,
        actguard.display()
    )
}

fn source(guarded: bool) -> String {
    let mut s = String::from(
        "#![allow(dead_code, unused_variables)]\n\
         use actguard::{Classify, Run};\n\
         use serde::{Deserialize, Serialize};\n\n\
         #[derive(Debug, Classify, thiserror::Error)]\n\
         pub enum GenError {\n    \
         #[error(\"unavailable\")]\n    #[classify(transient)]\n    Unavailable,\n    \
         #[error(\"invalid\")]\n    #[classify(validation)]\n    Invalid,\n}\n\n\
         #[derive(Debug, Clone, Serialize, Deserialize)]\n\
         pub struct Order {\n    pub id: String,\n    pub seq: u32,\n    pub cents: i64,\n}\n\n\
         #[derive(Debug, Clone, Serialize, Deserialize)]\n\
         pub struct Receipt {\n    pub id: String,\n    pub n: u64,\n}\n\n",
    );
    for i in 0..ACTIONS {
        if guarded {
            writeln!(
                s,
                "#[actguard::agent_action(key = \"act_{i}:{{o.id}}:{{o.seq}}\", record = \"{{o.id}}\", \
                 retries = 5, max_elapsed = \"2m\", dedup = \"24h\", owner = \"ops\", expert = \"risk\")]"
            )
            .unwrap();
        }
        writeln!(
            s,
            "pub async fn act_{i}(run: &Run, o: &Order) -> Result<Receipt, GenError> {{\n    \
             if o.cents < 0 {{\n        return Err(GenError::Invalid);\n    }}\n    \
             Ok(Receipt {{ id: o.id.clone(), n: {i} }})\n}}\n"
        )
        .unwrap();
    }
    s
}

/// `target/` of this workspace, found from the bench executable (`target/release/deps/...`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    // Every timed build compiles the generated crate from scratch.
    c.env("CARGO_INCREMENTAL", "0");
    c
}

fn build(dir: &Path, target: &Path) -> Duration {
    let start = Instant::now();
    let out = cargo()
        .args(["build", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .output()
        .expect("run cargo");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "cargo build of {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn touch(file: &Path) {
    let f = std::fs::File::options().append(true).open(file).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: only build then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("compile_time: run with `cargo bench -p actguard --bench compile_time`");
        return;
    }
    let rounds: usize = std::env::var("COMPILE_TIME_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = runtime.parent().unwrap();
    let root = target_dir().join("compile-time-bench");
    let shared_target = root.join("target");
    let mut dirs = Vec::new();
    for (name, guarded) in VARIANTS {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), manifest(name, runtime)).unwrap();
        std::fs::write(dir.join("src/lib.rs"), source(guarded)).unwrap();
        // The workspace's lock file: the same dependency versions, no resolution against the registry.
        if !dir.join("Cargo.lock").exists() {
            std::fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        }
        dirs.push((name, dir));
    }

    // Dependencies (actguard, the macros, serde, tokio, ...) are built once, shared by both crates.
    for (name, dir) in &dirs {
        let took = build(dir, &shared_target);
        println!(
            "compile_time: first build of {name} (with dependencies): {:.1}s",
            took.as_secs_f64()
        );
    }

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); dirs.len()];
    for round in 0..rounds {
        for (i, (name, dir)) in dirs.iter().enumerate() {
            touch(&dir.join("src/lib.rs"));
            let took = build(dir, &shared_target);
            println!(
                "compile_time: round {} {name}: {} ms",
                round + 1,
                took.as_millis()
            );
            times[i].push(took);
        }
    }
    let plain = median(times[0].clone());
    let guarded = median(times[1].clone());
    let per_action = (guarded.as_secs_f64() - plain.as_secs_f64()) * 1000.0 / ACTIONS as f64;
    println!();
    println!("| crate ({ACTIONS} async fns) | median rebuild | rounds |");
    println!("|---|---|---|");
    println!(
        "| without the attribute | {} ms | {rounds} |",
        plain.as_millis()
    );
    println!(
        "| with `#[agent_action]` | {} ms | {rounds} |",
        guarded.as_millis()
    );
    println!();
    println!(
        "added: {} ms for {ACTIONS} actions = {per_action:.1} ms per action (ratio {:.2}x)",
        guarded.as_millis() as i128 - plain.as_millis() as i128,
        guarded.as_secs_f64() / plain.as_secs_f64()
    );
}
