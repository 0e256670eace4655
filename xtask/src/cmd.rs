//! Running commands, with errors that say which command failed.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An xtask failure, printed as one line (plus the command when there is one).
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn msg(m: impl Into<String>) -> Self {
        Self(m.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// A command to run, echoed before it runs.
#[derive(Debug)]
pub(crate) struct Cmd {
    inner: Command,
    shown: String,
}

impl Cmd {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        let shown = program.as_ref().to_string_lossy().into_owned();
        Self {
            inner: Command::new(program),
            shown,
        }
    }

    pub(crate) fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.shown.push(' ');
        self.shown.push_str(&a.as_ref().to_string_lossy());
        self.inner.arg(a);
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    pub(crate) fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.inner.current_dir(dir);
        self
    }

    /// Runs to completion with inherited stdio; fails on a non-zero exit.
    pub(crate) fn run(mut self) -> Result<(), Error> {
        println!("$ {}", self.shown);
        let status = self
            .inner
            .status()
            .map_err(|e| Error::msg(format!("could not run `{}`: {e}", self.shown)))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::msg(format!("`{}` failed ({status})", self.shown)))
        }
    }

    /// Runs quietly and returns stdout; fails with stderr on a non-zero exit.
    pub(crate) fn read(mut self) -> Result<String, Error> {
        let out = self
            .inner
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::msg(format!("could not run `{}`: {e}", self.shown)))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::msg(format!(
                "`{}` failed ({}): {}",
                self.shown,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// The underlying command, for spawning long-running children.
    pub(crate) fn into_command(self) -> Command {
        self.inner
    }
}

/// The full path of `program` if it is on `PATH` (or is a path that exists).
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    // Cargo subcommands live in ~/.cargo/bin, which may not be on PATH.
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

pub(crate) fn has_program(program: &str) -> bool {
    find_program(program).is_some()
}
