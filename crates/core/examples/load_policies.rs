//! Loads a policy folder as `serve` does and prints what it holds: the subject of the large
//! policy set measurements in BENCHMARKS.md (run it under heaptrack or /usr/bin/time -v; the
//! system allocator here, so heaptrack sees every allocation).
//!
//!   cargo run --release -p cedargate-core --example load_policies -- CONFIG

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: load_policies CONFIG")?,
    );
    let config = cedargate_core::config::Config::load(&config)?;
    let started = std::time::Instant::now();
    let snapshot =
        cedargate_core::shapes::load_checked_reporting(&config.policy_dir, &config, &mut |step| {
            eprintln!("{:>7.1} s  {step}", started.elapsed().as_secs_f64())
        })?;
    eprintln!(
        "{:>7.1} s  loaded {} policies, version {}",
        started.elapsed().as_secs_f64(),
        snapshot.info.len(),
        snapshot.version
    );
    Ok(())
}
