//! `cargo xtask bench [crate] [-- criterion args]`: runs the criterion benches
//! and prints the ratio table of `docs/benchmarks.md`.
//!
//! Convention (docs/architecture.md): a criterion group `<crate>_<case>` holds a
//! function `foundation` and one function per anchor crate. The ratio is
//! foundation's median time divided by the anchor's.

use std::fs;
use std::path::Path;

use crate::cmd::{Cmd, Error};

pub(crate) fn command(root: &Path, args: &[String]) -> Result<(), Error> {
    let (ours, criterion_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let crates = bench_crates(root)?;
    let selected: Vec<&String> = match ours.first() {
        Some(want) => {
            let want = if want.starts_with("foundation-") {
                want.clone()
            } else {
                format!("foundation-{want}")
            };
            let found: Vec<&String> = crates.iter().filter(|c| **c == want).collect();
            if found.is_empty() {
                return Err(Error::msg(format!(
                    "no crate `{want}` with benches; crates with benches: {}",
                    crates.join(", ")
                )));
            }
            found
        }
        None => crates.iter().collect(),
    };
    // Backend benches (events on PostgreSQL, …) measure against the same
    // servers the tests use.
    let services = crate::services::Running::start_for_tests(root)?;
    for krate in &selected {
        // `--bench *`: only the criterion targets get criterion's arguments
        // (libtest harnesses reject them).
        let mut bench = Cmd::new("cargo")
            .args(["bench", "--locked", "--all-features", "--bench", "*"])
            .args(["--package", krate.as_str(), "--"])
            .args(criterion_args.iter().map(String::as_str))
            .cwd(root);
        for (key, value) in services.env() {
            bench = bench.env(&key, &value);
        }
        bench.run()?;
    }
    drop(services);
    let prefixes: Vec<String> = selected
        .iter()
        .map(|c| format!("{}_", c.trim_start_matches("foundation-")))
        .collect();
    let rows = ratio_rows(&root.join("target").join("criterion"), &prefixes)?;
    println!("\n| group | anchor | foundation | anchor time | ratio |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2}x |",
            r.group,
            r.anchor,
            fmt_ns(r.ours_ns),
            fmt_ns(r.anchor_ns),
            r.ours_ns / r.anchor_ns
        );
    }
    if rows.is_empty() {
        println!("(no groups with a `foundation` function and an anchor were found)");
    }
    Ok(())
}

/// Crates under `crates/` that have a `benches/` directory.
fn bench_crates(root: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root.join("crates"))? {
        let path = entry?.path();
        if path.join("benches").is_dir()
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Debug)]
struct Row {
    group: String,
    anchor: String,
    ours_ns: f64,
    anchor_ns: f64,
}

fn ratio_rows(criterion: &Path, prefixes: &[String]) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    let Ok(groups) = fs::read_dir(criterion) else {
        return Ok(rows);
    };
    let mut groups: Vec<_> = groups.filter_map(Result::ok).map(|e| e.path()).collect();
    groups.sort();
    for group_dir in groups {
        let Some(group) = group_dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        if !prefixes.iter().any(|p| group.starts_with(p.as_str())) {
            continue;
        }
        let Some(ours) = median_ns(&group_dir.join("foundation")) else {
            continue;
        };
        let mut anchors: Vec<_> = fs::read_dir(&group_dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        anchors.sort();
        for anchor_dir in anchors {
            let Some(anchor) = anchor_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if anchor == "foundation" || anchor == "report" {
                continue;
            }
            if let Some(anchor_ns) = median_ns(&anchor_dir) {
                rows.push(Row {
                    group: group.clone(),
                    anchor: anchor.to_owned(),
                    ours_ns: ours,
                    anchor_ns,
                });
            }
        }
    }
    Ok(rows)
}

/// The median point estimate (ns) from criterion's `new/estimates.json`.
fn median_ns(function_dir: &Path) -> Option<f64> {
    let json = fs::read_to_string(function_dir.join("new").join("estimates.json")).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let after = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = after.find([',', '}'])?;
    after[..end].trim().parse().ok()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_median_from_criterion_estimates() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let new = dir.join("new");
        fs::create_dir_all(&new).unwrap();
        fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":9.0,"standard_error":0.1},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":12.5,"standard_error":0.1}}"#,
        )
        .unwrap();
        assert_eq!(median_ns(&dir), Some(12.5));
        fs::remove_dir_all(&dir).unwrap();
    }
}
