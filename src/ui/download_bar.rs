//! How a download's progress looks to people: the CLI's `DownloadProgress`.
//!
//! On a terminal it is an indicatif bar on stderr with bytes, rate and ETA. Anywhere else (a log
//! file, CI, `--output json`) it is a few plain lines on stderr through the `Printer`: the start,
//! every 25%, each retry, and the end. With `-q` it shows nothing. The line texts come from
//! `PlainLines`, a small state machine without I/O, so they are unit-tested.

use crate::exec::download::DownloadProgress;
use crate::ui::Printer;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    Hidden,
    Bar,
    Lines,
}

impl Presentation {
    /// Hidden with -q; a bar only on a terminal in human mode; lines otherwise.
    pub fn choose(printer: &Printer, stderr_is_terminal: bool) -> Presentation {
        if printer.verbosity < 0 {
            Presentation::Hidden
        } else if stderr_is_terminal && !printer.json_mode() {
            Presentation::Bar
        } else {
            Presentation::Lines
        }
    }
}

/// The CLI's download progress.
pub struct DownloadBar {
    printer: Printer,
    display: Presentation,
    bar: Mutex<Option<ProgressBar>>,
    lines: Mutex<PlainLines>,
}

impl DownloadBar {
    pub fn new(printer: &Printer) -> Self {
        Self::with_display(printer, Presentation::choose(printer, std::io::stderr().is_terminal()))
    }

    pub fn with_display(printer: &Printer, display: Presentation) -> Self {
        DownloadBar {
            printer: *printer,
            display,
            bar: Mutex::new(None),
            lines: Mutex::new(PlainLines::default()),
        }
    }

    fn line(&self, text: Option<String>) {
        if let Some(text) = text {
            self.printer.info(&text);
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        if let Ok(mut bar) = self.bar.lock() {
            f(&mut bar);
        }
    }

    fn with_lines(&self, f: impl FnOnce(&mut PlainLines) -> Option<String>) {
        let text = match self.lines.lock() {
            Ok(mut lines) => f(&mut lines),
            Err(_) => None,
        };
        self.line(text);
    }
}

impl DownloadProgress for DownloadBar {
    fn started(&self, url: &str, total: Option<u64>) {
        match self.display {
            Presentation::Hidden => {}
            Presentation::Bar => self.with_bar(|slot| {
                if let Some(old) = slot.take() {
                    old.finish_and_clear();
                }
                *slot = Some(new_bar(url, total));
            }),
            Presentation::Lines => self.with_lines(|l| l.started(url, total)),
        }
    }

    fn advanced(&self, bytes_so_far: u64) {
        match self.display {
            Presentation::Hidden => {}
            Presentation::Bar => self.with_bar(|slot| {
                if let Some(bar) = slot {
                    bar.set_position(bytes_so_far);
                }
            }),
            Presentation::Lines => self.with_lines(|l| l.advanced(bytes_so_far)),
        }
    }

    fn retrying(&self, url: &str, attempt: u32, wait: Duration, why: &str) {
        let text = retry_line(url, attempt, wait, why);
        match self.display {
            Presentation::Hidden => {}
            Presentation::Bar => self.with_bar(|slot| match slot {
                Some(bar) => bar.println(format!("warning: {}", crate::redact::text(&text))),
                None => self.printer.warn(&text),
            }),
            Presentation::Lines => self.printer.warn(&text),
        }
    }

    fn finished(&self, url: &str, bytes: u64) {
        match self.display {
            Presentation::Hidden => {}
            Presentation::Bar => self.with_bar(|slot| {
                if let Some(bar) = slot.take() {
                    bar.finish_and_clear();
                }
                self.printer.info(&done_line(url, bytes));
            }),
            Presentation::Lines => self.with_lines(|l| l.finished(url, bytes)),
        }
    }
}

fn new_bar(url: &str, total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("downloading {}", file_name(url)));
    bar
}

/// The last path segment of a URL, for short messages.
pub fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(url)
}

fn retry_line(url: &str, attempt: u32, wait: Duration, why: &str) -> String {
    format!(
        "{}: {why}; attempt {attempt} in {:.1}s",
        file_name(url),
        wait.as_secs_f32()
    )
}

fn done_line(url: &str, bytes: u64) -> String {
    format!("downloaded {} ({})", file_name(url), HumanBytes(bytes))
}

/// Plain-line progress: which line (if any) each event prints.
#[derive(Debug, Default)]
pub struct PlainLines {
    url: String,
    total: Option<u64>,
    /// Quarters already reported (0..=3): 25%, 50%, 75%.
    reported: u64,
}

impl PlainLines {
    pub fn started(&mut self, url: &str, total: Option<u64>) -> Option<String> {
        self.url = url.to_string();
        self.total = total;
        self.reported = 0;
        Some(match total {
            Some(total) => format!("downloading {} ({})", file_name(url), HumanBytes(total)),
            None => format!("downloading {}", file_name(url)),
        })
    }

    /// A line when the transfer crossed the next 25% mark (only the highest one crossed).
    pub fn advanced(&mut self, bytes_so_far: u64) -> Option<String> {
        let total = self.total.filter(|t| *t > 0)?;
        let quarter = (u128::from(bytes_so_far) * 4 / u128::from(total)).min(3) as u64;
        if quarter <= self.reported {
            return None;
        }
        self.reported = quarter;
        Some(format!(
            "{}: {}% ({} of {})",
            file_name(&self.url),
            quarter * 25,
            HumanBytes(bytes_so_far),
            HumanBytes(total)
        ))
    }

    pub fn finished(&mut self, url: &str, bytes: u64) -> Option<String> {
        Some(done_line(url, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OutputFormat;

    #[test]
    fn lines_at_start_each_quarter_and_end() {
        let url = "https://github.com/k3s-io/k3s/releases/download/v1.33.4%2Bk3s1/k3s";
        let mut l = PlainLines::default();
        let mut out = vec![l.started(url, Some(1000))];
        for got in (0..=1000).step_by(10) {
            out.push(l.advanced(got));
        }
        out.push(l.finished(url, 1000));
        let out: Vec<String> = out.into_iter().flatten().collect();
        assert_eq!(
            out,
            [
                "downloading k3s (1000 B)",
                "k3s: 25% (250 B of 1000 B)",
                "k3s: 50% (500 B of 1000 B)",
                "k3s: 75% (750 B of 1000 B)",
                "downloaded k3s (1000 B)",
            ]
        );
    }

    #[test]
    fn a_big_jump_reports_once_and_a_retry_starts_over() {
        let mut l = PlainLines::default();
        l.started("http://x/a", Some(100));
        assert_eq!(l.advanced(99).as_deref(), Some("a: 75% (99 B of 100 B)"));
        assert_eq!(l.advanced(100), None);
        l.started("http://x/a", Some(100));
        assert_eq!(l.advanced(30).as_deref(), Some("a: 25% (30 B of 100 B)"));
    }

    #[test]
    fn unknown_total_prints_start_and_end_only() {
        let mut l = PlainLines::default();
        assert_eq!(l.started("http://x/f", None).as_deref(), Some("downloading f"));
        assert_eq!(l.advanced(5_000_000), None);
        assert_eq!(
            l.finished("http://x/f", 5_000_000).as_deref(),
            Some("downloaded f (4.77 MiB)")
        );
    }

    #[test]
    fn retry_line_names_file_reason_attempt_and_wait() {
        assert_eq!(
            retry_line(
                "http://h/p/k0s-v1.33.4%2Bk0s.0-amd64",
                2,
                Duration::from_millis(1500),
                "HTTP 503"
            ),
            "k0s-v1.33.4%2Bk0s.0-amd64: HTTP 503; attempt 2 in 1.5s"
        );
    }

    #[test]
    fn display_choice() {
        let human = Printer::new(OutputFormat::Human, 0, false, false);
        let quiet = Printer::new(OutputFormat::Human, 0, true, false);
        let json = Printer::new(OutputFormat::Json, 0, false, false);
        assert_eq!(Presentation::choose(&human, true), Presentation::Bar);
        assert_eq!(Presentation::choose(&human, false), Presentation::Lines);
        assert_eq!(Presentation::choose(&quiet, true), Presentation::Hidden);
        assert_eq!(Presentation::choose(&json, true), Presentation::Lines);
        assert_eq!(Presentation::choose(&json, false), Presentation::Lines);
    }
}
