//! `cargo xtask`: the one entry point for the workspace's chores.
//!
//! ```text
//! cargo xtask test                 fmt, clippy, every test incl. backend suites against real servers
//! cargo xtask ci                   test + docs with -D warnings + tidy + cargo deny
//! cargo xtask services up|down|status
//! cargo xtask demo                 the composed demo workload on embedded defaults
//! cargo xtask bench [crate] [-- criterion args]
//! cargo xtask tidy                 workspace conventions
//! ```
//!
//! xtask depends on nothing outside std so that it builds in seconds.
#![allow(
    clippy::print_stdout,
    reason = "xtask is a command-line tool; printing is its output"
)]

mod bench;
mod cmd;
mod services;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cmd::{Cmd, Error};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test                      fmt check, clippy -D warnings, all unit/integration/doc tests, then the
                            backend suites against PostgreSQL/Redis (and etcd when a crate needs it)
                            that it starts itself on free loopback ports and stops afterwards
  ci                        test + `cargo doc --no-deps` with -D warnings + tidy + cargo deny
  services up|down|status   start/stop/show the backend servers for running backend tests by hand
  demo                      run the demo workload (crates/foundation/examples/demo) on embedded defaults
  bench [crate] [-- args]   run criterion benches and print the foundation/anchor ratio table
  tidy                      check workspace conventions (README, docs, lints, features, architecture.md)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("ci") => ci(&root),
        Some("services") => services::command(&root, args.get(1).map(String::as_str)),
        Some("demo") => demo(&root, &args[1..]),
        Some("bench") => bench::command(&root, &args[1..]),
        Some("tidy") => tidy::command(&root),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(Error::msg(format!("unknown command `{other}`\n\n{USAGE}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn step(title: &str) {
    println!("\n==> {title}");
}

/// Everything, in the order that fails fastest.
fn test(root: &Path) -> Result<(), Error> {
    step("cargo fmt --check");
    Cmd::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .cwd(root)
        .run()?;

    step("cargo clippy (all targets, all features, -D warnings)");
    Cmd::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
            "--",
        ])
        .args(["-D", "warnings"])
        .cwd(root)
        .run()?;

    // Feature combinations compile warning-free too: default features, and
    // each library without its default features.
    step("cargo clippy (default features; libraries without default features)");
    Cmd::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .cwd(root)
        .run()?;
    Cmd::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--lib",
            "--no-default-features",
            "--locked",
        ])
        .args(["--", "-D", "warnings"])
        .cwd(root)
        .run()?;

    step("test tools");
    // foundation-metrics checks its exposition with `promtool check metrics`.
    services::ensure_package("prometheus", &["promtool"])?;

    step("starting backend servers");
    let services = services::Running::start_for_tests(root)?;
    for (key, value) in services.env() {
        println!("    {key}={value}");
    }

    step("unit, integration and backend tests (nextest, ignored backend suites included)");
    let mut run = if cmd::has_program("cargo-nextest") {
        Cmd::new("cargo").args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--locked",
            "--profile",
            "ci",
            "--run-ignored",
            "all",
            "--no-tests",
            "pass",
        ])
    } else {
        println!("    cargo-nextest not found: falling back to cargo test");
        Cmd::new("cargo")
            .args([
                "test",
                "--workspace",
                "--all-features",
                "--locked",
                "--lib",
                "--bins",
            ])
            .args(["--tests", "--examples", "--", "--include-ignored"])
    };
    for (key, value) in services.env() {
        run = run.env(&key, &value);
    }
    let tests = run.cwd(root).run();

    step("doc tests");
    let docs = Cmd::new("cargo")
        .args(["test", "--workspace", "--all-features", "--locked", "--doc"])
        .cwd(root)
        .run();

    // Servers stop here (Drop), whatever the outcome.
    drop(services);
    tests?;
    docs?;
    println!("\nxtask test: all passed");
    Ok(())
}

fn ci(root: &Path) -> Result<(), Error> {
    test(root)?;

    // Both ways: docs.rs builds with all features, users with the defaults,
    // and links to feature-gated items must not break either.
    for features in ["--all-features", "--no-default-features"] {
        step(&format!("cargo doc (no deps, {features}, -D warnings)"));
        Cmd::new("cargo")
            .args([
                "doc",
                "--workspace",
                "--exclude",
                "xtask",
                "--no-deps",
                features,
                "--locked",
            ])
            .env("RUSTDOCFLAGS", "-D warnings")
            .cwd(root)
            .run()?;
    }

    step("tidy");
    tidy::command(root)?;

    step("cargo deny check licenses bans sources");
    if !cmd::has_program("cargo-deny") {
        println!("    cargo-deny not found: installing with `cargo install --locked cargo-deny`");
        Cmd::new("cargo")
            .args(["install", "--locked", "cargo-deny"])
            .run()?;
    }
    Cmd::new("cargo")
        .args([
            "deny",
            "--all-features",
            "check",
            "licenses",
            "bans",
            "sources",
        ])
        .cwd(root)
        .run()?;
    println!("\nxtask ci: all passed");
    Ok(())
}

fn demo(root: &Path, extra: &[String]) -> Result<(), Error> {
    Cmd::new("cargo")
        .args([
            "run",
            "--quiet",
            "--package",
            "foundation",
            "--example",
            "demo",
            "--features",
            "full",
        ])
        .args(["--"])
        .args(extra.iter().map(String::as_str))
        .cwd(root)
        .run()
}

#[cfg(test)]
mod tests {
    /// `cargo xtask tidy` as a test, so that `cargo test` alone catches drift.
    #[test]
    fn tidy() {
        let root = super::workspace_root();
        let problems = super::tidy::check(&root);
        assert!(
            problems.is_empty(),
            "tidy found problems:\n{}",
            problems.join("\n")
        );
    }
}
