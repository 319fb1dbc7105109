//! `kstrap down`: remove what kstrap installed, and nothing else.

use super::{Exit, Failure};
use crate::cli::{DownArgs, GlobalArgs};
use crate::ui::Printer;

pub fn run(_global: &GlobalArgs, _args: &DownArgs, _printer: &Printer) -> Result<Exit, Failure> {
    Err(Failure::failed("`kstrap down` is not built yet (issue 4)"))
}
