//! `kstrap status`: the cluster, GPU sharing and the stack at a glance.

use super::{Exit, Failure};
use crate::cli::{GlobalArgs, StatusArgs};
use crate::ui::Printer;

pub fn run(_global: &GlobalArgs, _args: &StatusArgs, _printer: &Printer) -> Result<Exit, Failure> {
    Err(Failure::failed("`kstrap status` is not built yet (issue 5)"))
}
