//! A preflight finding: one check's verdict, what was found and how to fix it.
//!
//! A leaf of the module tree: `checks` produces findings and the plan's step vocabulary carries
//! them, so the type lives below both and depends on nothing in the crate.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Pass,
    Warn,
    Fail,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Pass => "pass",
            Severity::Warn => "warn",
            Severity::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Short identifier of the check: "memory", "swap", "ports".
    pub check: String,
    /// What was found, with figures.
    pub what: String,
    /// What to do about it; absent on a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how_to_fix: Option<String>,
}

impl Finding {
    pub fn pass(check: &str, what: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Pass,
            check: check.into(),
            what: what.into(),
            how_to_fix: None,
        }
    }
    pub fn warn(check: &str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warn,
            check: check.into(),
            what: what.into(),
            how_to_fix: Some(fix.into()),
        }
    }
    pub fn fail(check: &str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Fail,
            check: check.into(),
            what: what.into(),
            how_to_fix: Some(fix.into()),
        }
    }
}
