//! Shared by the criterion benches: reading back what criterion measured, so
//! each bench can print its ratios against the baseline of the same run.

use std::path::PathBuf;

/// Mean nanoseconds per iteration that criterion recorded for the benchmark
/// at `group/id...` in this run (`None` when it did not run, e.g. filtered).
pub fn criterion_mean_ns(group: &str, id: &[&str]) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| "target".into());
    let mut path = target.join("criterion").join(group);
    for part in id {
        path.push(part);
    }
    let text = std::fs::read_to_string(path.join("new/estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}
