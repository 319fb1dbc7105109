//! `kstrap join-command`: how to add a worker to this cluster.

use super::{Exit, Failure};
use crate::cli::{GlobalArgs, JoinArgs};
use crate::ui::Printer;

pub fn run(_global: &GlobalArgs, _args: &JoinArgs, _printer: &Printer) -> Result<Exit, Failure> {
    Err(Failure::failed("`kstrap join-command` is not built yet (issue 4)"))
}
