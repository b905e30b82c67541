//! `actguard`: the operators' command (log, verify, queues, blast radius, manifest).

fn main() {
    println!("actguard {}", env!("CARGO_PKG_VERSION"));
}
