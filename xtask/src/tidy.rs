//! `cargo xtask tidy`: the workspace's conventions, checked.
//!
//! Also runs as a `#[test]` (see `main.rs`), so a plain `cargo test` catches drift.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cmd::Error;

pub(crate) fn command(root: &Path) -> Result<(), Error> {
    let problems = check(root);
    if problems.is_empty() {
        println!("tidy: ok");
        Ok(())
    } else {
        for p in &problems {
            println!("tidy: {p}");
        }
        Err(Error::msg(format!(
            "tidy found {} problem(s)",
            problems.len()
        )))
    }
}

/// Every convention violation found, one line each.
pub(crate) fn check(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let root_manifest = read(&root.join("Cargo.toml"));
    let architecture = read(&root.join("docs").join("architecture.md"));
    let umbrella = read(&root.join("crates").join("foundation").join("Cargo.toml"));
    let umbrella_lib = read(&root.join("crates/foundation/src/lib.rs"));

    for file in [
        "README.md",
        "CHANGELOG.md",
        "deny.toml",
        "clippy.toml",
        "rustfmt.toml",
        ".cargo/config.toml",
        ".config/nextest.toml",
        ".ci/run",
        "docs/architecture.md",
        "docs/benchmarks.md",
    ] {
        if !root.join(file).is_file() {
            problems.push(format!("{file} is missing"));
        }
    }
    let readme = read(&root.join("README.md"));
    for command in ["cargo xtask demo", "cargo xtask test"] {
        if !readme.contains(command) {
            problems.push(format!("README.md does not show `{command}`"));
        }
    }
    if !read(&root.join(".ci/run")).contains("cargo xtask test") {
        problems.push(".ci/run does not call `cargo xtask test`".into());
    }

    let mut members: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    members.sort();
    members.push(root.join("xtask"));

    for dir in &members {
        let manifest_path = dir.join("Cargo.toml");
        let Ok(manifest) = fs::read_to_string(&manifest_path) else {
            continue;
        };
        let name = package_name(&manifest).unwrap_or_default();
        let at = |what: &str| format!("{name}: {what}");
        if !has_workspace_lints(&manifest) {
            problems.push(at("Cargo.toml lacks `[lints] workspace = true`"));
        }
        for dep in internal_deps(&manifest) {
            if !dep.1 {
                problems.push(at(&format!(
                    "depends on `{}` without `workspace = true`",
                    dep.0
                )));
            }
        }
        if name == "xtask" {
            continue;
        }
        if !dir.join("README.md").is_file() {
            problems.push(at("no README.md"));
        }
        let lib = read(&dir.join("src").join("lib.rs"));
        if !lib.trim_start().starts_with("//!") {
            problems.push(at("src/lib.rs does not open with crate docs (`//!`)"));
        }
        for (file, line) in find_in_sources(&dir.join("src"), &["todo!(", "unimplemented!("]) {
            problems.push(at(&format!(
                "todo!/unimplemented! in library code at {}:{line}",
                file.strip_prefix(root).unwrap_or(&file).display()
            )));
        }
        if !architecture.contains(&format!("`{name}`")) {
            problems.push(at("not described in docs/architecture.md"));
        }
        if name == "foundation" {
            continue;
        }
        if !workspace_dep_has_path_and_version(&root_manifest, &name) {
            problems.push(at(
                "not in root [workspace.dependencies] with both `path` and `version`",
            ));
        }
        if name == "foundation-core" {
            continue;
        }
        // Capability crates.
        let short = name.trim_start_matches("foundation-");
        if !umbrella.contains(&format!("\n{short} = [\"dep:{name}\"")) {
            problems.push(at(&format!(
                "the umbrella crate has no feature `{short} = [\"dep:{name}\"]`"
            )));
        }
        if !full_feature(&umbrella).iter().any(|f| f == short) {
            problems.push(at(&format!(
                "the umbrella's `full` feature lacks `{short}`"
            )));
        }
        if !umbrella_lib.contains(&format!(
            "pub use foundation_{} as",
            short.replace('-', "_")
        )) {
            problems.push(at("not re-exported by the umbrella crate's lib.rs"));
        }
        for sub in ["tests", "benches"] {
            if !dir.join(sub).is_dir() {
                problems.push(at(&format!("no {sub}/ directory")));
            }
        }
    }
    problems
}

fn package_name(manifest: &str) -> Option<String> {
    let pkg = manifest.split("[package]").nth(1)?;
    pkg.lines()
        .find_map(|l| l.trim().strip_prefix("name"))
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_owned)
}

fn has_workspace_lints(manifest: &str) -> bool {
    manifest
        .split("[lints]")
        .nth(1)
        .and_then(|rest| rest.lines().map(str::trim).find(|l| !l.is_empty()))
        .is_some_and(|l| l.replace(' ', "") == "workspace=true")
}

/// `(name, uses workspace = true)` for each `foundation-*` dependency line.
fn internal_deps(manifest: &str) -> Vec<(String, bool)> {
    manifest
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("foundation") && l.contains('='))
        .filter_map(|l| {
            let (name, rest) = l.split_once('=')?;
            let name = name.trim();
            // Feature lists look like `ratelimit = ["dep:foundation-ratelimit"]`.
            if rest.trim_start().starts_with('[') || !name.starts_with("foundation") {
                return None;
            }
            let ws = rest.replace(' ', "").contains("workspace=true");
            Some((name.to_owned(), ws))
        })
        .collect()
}

fn workspace_dep_has_path_and_version(root_manifest: &str, name: &str) -> bool {
    let Some(section) = root_manifest.split("[workspace.dependencies]").nth(1) else {
        return false;
    };
    section.lines().map(str::trim).any(|l| {
        l.starts_with(&format!("{name} "))
            && l.contains(&format!("path = \"crates/{name}\""))
            && l.contains("version")
    })
}

fn full_feature(umbrella: &str) -> Vec<String> {
    let Some(start) = umbrella.find("\nfull = [") else {
        return Vec::new();
    };
    let rest = &umbrella[start + "\nfull = [".len()..];
    let list = rest.split(']').next().unwrap_or_default();
    list.split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn find_in_sources(dir: &Path, needles: &[&str]) -> Vec<(PathBuf, usize)> {
    let mut hits = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return hits;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(find_in_sources(&path, needles));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if needles.iter().any(|n| code.contains(n)) {
                    hits.push((path.clone(), i + 1));
                }
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_bits() {
        let m = "[package]\nname = \"foundation-x\"\n\n[dependencies]\nfoundation-core = { workspace = true }\nfoundation-y = { path = \"../y\" }\n\n[lints]\nworkspace = true\n";
        assert_eq!(package_name(m).as_deref(), Some("foundation-x"));
        assert!(has_workspace_lints(m));
        assert_eq!(
            internal_deps(m),
            vec![
                ("foundation-core".to_owned(), true),
                ("foundation-y".to_owned(), false)
            ]
        );
        let u = "[features]\nfull = [\"a\", \"b\"]\na = [\"dep:foundation-a\"]\n";
        assert_eq!(full_feature(u), ["a", "b"]);
    }
}
