//! The `kstrap` binary: parse, set up output, run, exit. The only `process::exit` is here.

use clap::Parser;
use kstrap::app;
use kstrap::cli::{Cli, OutputFormat};
use kstrap::env;
use kstrap::ui::Printer;
use std::io::IsTerminal;

fn main() {
    let cli = Cli::parse();
    let color = std::io::stderr().is_terminal() && std::env::var_os(env::NO_COLOR).is_none();
    let printer = Printer::new(cli.global.output, cli.global.verbose, cli.global.quiet, color);
    let code = match app::run(cli, &printer) {
        Ok(exit) => exit,
        Err(failure) => {
            printer.error(&failure.message);
            if printer.format == OutputFormat::Json {
                printer.json(&serde_json::json!({ "error": failure.message, "exit_code": failure.exit as u8 }));
            }
            failure.exit
        }
    };
    std::process::exit(code as i32);
}
