//! Step progress for `up` and `down`: a line per step for people (✓ changed, – unchanged,
//! ✗ failed, with the time it took), or with `-o json` one JSON event per line on stderr, so a
//! script can follow a run while stdout keeps exactly one document (the final report).
//!
//! Also the confirmation prompt: asked on a terminal, refused (exit 2, "pass --yes") otherwise.

use super::Printer;
use crate::app::Failure;
use crate::exec::{Outcome, StepProgress};
use crate::plan::step::Step;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

pub struct StepLines {
    pub printer: Printer,
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl StepLines {
    fn event(&self, value: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
        let _ = err.flush();
    }
}

impl StepProgress for StepLines {
    fn started(&self, step: &Step) {
        if self.printer.json_mode() {
            self.event(serde_json::json!({ "event": "start", "step": step.id }));
        } else if self.printer.verbosity >= 1 {
            self.printer.info(&format!("  … {}", step.title));
        }
    }

    fn finished(&self, step: &Step, outcome: &Outcome, elapsed: Duration) {
        if self.printer.json_mode() {
            let mut event = serde_json::json!({
                "event": "done",
                "step": step.id,
                "elapsed_ms": elapsed.as_millis() as u64,
            });
            // `{"outcome": "changed"}` or `{"outcome": "skipped", "note": "..."}`, inline.
            if let (Some(e), Ok(serde_json::Value::Object(o))) = (event.as_object_mut(), serde_json::to_value(outcome))
            {
                e.extend(o);
            }
            self.event(event);
            return;
        }
        let line = match outcome {
            Outcome::Changed => format!("  ✓ {} ({})", step.title, secs(elapsed)),
            Outcome::Checked => format!("  ✓ {} ({})", step.title, secs(elapsed)),
            Outcome::Unchanged => format!("  – {} (unchanged)", step.title),
            Outcome::Skipped(why) => format!("  – {} (skipped: {why})", step.title),
        };
        self.printer.info(&line);
    }

    fn failed(&self, step: &Step, message: &str, elapsed: Duration) {
        if self.printer.json_mode() {
            // The message is kstrap's own text; it never carries file contents or tokens.
            self.event(serde_json::json!({
                "event": "failed",
                "step": step.id,
                "message": message,
                "elapsed_ms": elapsed.as_millis() as u64,
            }));
        } else {
            self.printer.info(&format!("  ✗ {} ({})", step.title, secs(elapsed)));
        }
    }
}

/// A line of `down` progress.
pub fn removed(printer: &Printer, what: &str) {
    if printer.json_mode() {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", serde_json::json!({ "event": "removed", "what": what }));
    } else {
        printer.info(&format!("  ✓ {what}"));
    }
}

/// Goes on when `yes` (--yes) or the user agrees to `question`. A "no" is a failure (exit 1) with
/// `declined` as its message; nobody to ask (stdin is not a terminal) is a usage error (exit 2).
pub fn ask(yes: bool, question: &str, declined: &str) -> Result<(), Failure> {
    consent(yes, question, declined, confirm)
}

/// `ask`, with the prompt passed in (`confirm` on a terminal; a stand-in answer in tests).
fn consent(
    yes: bool,
    question: &str,
    declined: &str,
    confirm: impl FnOnce(&str) -> Result<bool, String>,
) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    match confirm(question) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::failed(declined)),
        Err(why) => Err(Failure::usage(why)),
    }
}

/// Whether the user agrees. `Err` when nobody can be asked (stdin is not a terminal).
pub fn confirm(question: &str) -> Result<bool, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err("not asking for confirmation: stdin is not a terminal; pass --yes to go ahead".into());
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    drop(err);
    let mut line = String::new();
    let _ = stdin.lock().read_line(&mut line);
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Exit;

    #[test]
    fn consent_goes_on_with_yes_or_an_agreeing_answer_and_stops_otherwise() {
        let never = |_: &str| -> Result<bool, String> { panic!("--yes must not ask") };
        assert!(consent(true, "Go?", "stopped", never).is_ok());

        let asked = std::cell::RefCell::new(String::new());
        let agree = |q: &str| {
            asked.replace(q.to_string());
            Ok(true)
        };
        assert!(consent(false, "Install k3s?", "stopped", agree).is_ok());
        assert_eq!(asked.borrow().as_str(), "Install k3s?");

        let no = consent(false, "Go?", "stopped: nothing was removed", |_| Ok(false)).unwrap_err();
        assert_eq!(no.exit, Exit::Failed);
        assert_eq!(no.message, "stopped: nothing was removed");

        let nobody = consent(false, "Go?", "stopped", |_| Err("pass --yes".to_string())).unwrap_err();
        assert_eq!(nobody.exit, Exit::Usage);
        assert_eq!(nobody.message, "pass --yes");
    }
}
