//! Writes what a release archive carries besides the binary, from the same clap definition the
//! binary parses with (so they cannot drift): man pages (`kstrap.1` and one per subcommand,
//! through clap_mangen) and shell completions (bash, zsh, fish).
//!
//! Usage: `cargo run --example release_docs -- DIR` (writes DIR/man/*.1 and DIR/completions/*);
//! `scripts/release.sh` runs it.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: release_docs DIR");
        std::process::exit(2);
    };
    if let Err(e) = write(&dir) {
        eprintln!("release_docs: {}: {e}", dir.display());
        std::process::exit(1);
    }
}

fn write(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = kstrap::cli::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        let path = clap_complete::generate_to(shell, &mut cmd, "kstrap", &completions)?;
        println!("{}", path.display());
    }
    for entry in std::fs::read_dir(&man)? {
        println!("{}", entry?.path().display());
    }
    Ok(())
}
