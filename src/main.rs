//! The `kstrap` binary: parse, set up output, run, exit. The only `process::exit` is here.

use clap::Parser;
use kstrap::app;
use kstrap::cli::{Cli, OutputFormat};
use kstrap::env;
use kstrap::ui::Printer;
use std::io::IsTerminal;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
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

/// Arguments clap refused (an unknown flag, a bad `--distro`, a bad `KSTRAP_WITH`): clap's
/// message on stderr as usual, and with `-o json` also the one JSON document stdout promises.
/// `--help` and `--version` are not errors and print as clap prints them.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !json_requested() {
        e.exit();
    }
    let rendered = e.render().to_string();
    let printer = Printer::new(OutputFormat::Json, 0, false, false);
    printer.error(rendered.trim().trim_start_matches("error: "));
    let message: Vec<&str> = rendered
        .trim()
        .trim_start_matches("error: ")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
        .collect();
    let code = e.exit_code();
    printer.json(&serde_json::json!({ "error": message.join("\n"), "exit_code": code }));
    std::process::exit(code);
}

/// Whether the command line asks for JSON output, read from the raw arguments (clap could not
/// parse them): `-o json`, `-ojson`, `-o=json`, `--output json`, `--output=json`.
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.iter().enumerate().any(|(i, a)| {
        let next_is_json = args.get(i + 1).is_some_and(|n| n == "json");
        match a.as_str() {
            "--" => false,
            "-o" | "--output" => next_is_json,
            "-ojson" | "-o=json" | "--output=json" => true,
            _ => false,
        }
    })
}
