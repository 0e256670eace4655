//! The demo's report frame: sections of aligned key/value lines on stdout,
//! live progress on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Collects and prints the demo report.
#[derive(Debug)]
pub(crate) struct Report {
    started: Instant,
    sections: usize,
    live: bool,
}

impl Report {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            sections: 0,
            live: std::io::stderr().is_terminal(),
        }
    }

    /// Starts a numbered section.
    pub(crate) fn section(&mut self, title: &str) {
        self.sections += 1;
        println!();
        println!("== {}. {title}", self.sections);
    }

    /// A free-form line of text inside the current section.
    pub(crate) fn line(&self, text: impl AsRef<str>) {
        for l in text.as_ref().lines() {
            println!("   {l}");
        }
    }

    /// An aligned `key: value` line.
    pub(crate) fn kv(&self, key: &str, value: impl std::fmt::Display) {
        println!("   {key:<34} {value}");
    }

    /// A progress update: rewritten in place on a terminal, one line per
    /// update (throttled by the caller) otherwise. Goes to stderr so the
    /// report on stdout stays clean.
    pub(crate) fn progress(&self, what: &str, done: u64, total: u64) {
        let mut err = std::io::stderr().lock();
        if self.live {
            let _ = write!(err, "\r   .. {what}: {done}/{total}\x1b[K");
            if done >= total {
                let _ = write!(err, "\r\x1b[K");
            }
        } else if done == total || done.is_multiple_of((total / 4).max(1)) {
            let _ = writeln!(err, "   .. {what}: {done}/{total}");
        }
        let _ = err.flush();
    }

    pub(crate) fn finish(&self) {
        println!();
        println!("demo finished in {}", fmt_duration(self.started.elapsed()));
    }
}

/// `1.234s`, `12.5ms`, `830µs`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.3}s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{}µs", d.as_micros())
    }
}
