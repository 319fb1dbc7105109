//! Output: the `Printer` is the only writer to stdout and stderr; renderers are pure functions
//! from data to text, so every screen kstrap shows is snapshot-testable.
//!
//! With `--output json`, stdout carries exactly one JSON document and nothing else; messages
//! for people go to stderr. Colour only on a terminal, never with `NO_COLOR`. Every line passes
//! through `redact::text`: no credential in a URL, header echo or known secret reaches a terminal.

#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `eprintln!` with credentials masked (see `redact`), for the progress writers that bypass the
/// printer (they share the terminal with a progress bar).
macro_rules! eprintln_redacted {
    ($($arg:tt)*) => {
        eprintln!("{}", crate::redact::text(&format!($($arg)*)))
    };
}

pub mod download_bar;
pub mod render;
pub mod stage_progress;
pub mod status;
pub mod steps;
pub mod summary;

use crate::cli::OutputFormat;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: OutputFormat,
    /// -1 quiet, 0 normal, 1 and up more detail.
    pub verbosity: i8,
    pub color: bool,
}

impl Printer {
    pub fn new(format: OutputFormat, verbose: u8, quiet: bool, color: bool) -> Self {
        let verbosity = if quiet { -1 } else { verbose.min(3) as i8 };
        Printer {
            format,
            verbosity,
            color,
        }
    }

    pub fn json_mode(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// The command's result for people (human mode only; callers check).
    pub fn stdout(&self, text: &str) {
        let text = crate::redact::text(text);
        let mut out = std::io::stdout().lock();
        // A closed pipe (`kstrap plan | head`) is not an error worth reporting.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// The command's result as one JSON document on stdout.
    pub fn json<T: Serialize>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(s) => self.stdout(&format!("{s}\n")),
            Err(e) => self.error(&format!("cannot serialize output: {e}")),
        }
    }

    /// Progress and notes for people, on stderr; hidden by -q.
    pub fn info(&self, msg: &str) {
        if self.verbosity >= 0 {
            eprintln!("{}", crate::redact::text(msg));
        }
    }

    pub fn warn(&self, msg: &str) {
        if self.verbosity >= 0 {
            let label = self.paint("warning:", "33");
            eprintln!("{label} {}", crate::redact::text(msg));
        }
    }

    pub fn error(&self, msg: &str) {
        let label = self.paint("error:", "31");
        eprintln!("{label} {}", crate::redact::text(msg));
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}
