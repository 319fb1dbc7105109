//! `kstrap apply`: apply a stack to the current cluster and wait until it is ready.

use super::{Exit, Failure};
use crate::cli::{ApplyArgs, GlobalArgs};
use crate::ui::Printer;

pub fn run(_global: &GlobalArgs, _args: &ApplyArgs, _printer: &Printer) -> Result<Exit, Failure> {
    Err(Failure::failed("`kstrap apply` is not built yet (issue 3)"))
}
