//! `kiwictl`: thin command-line front end over the `kiwi_tooling` library.
//!
//! Parses arguments, resolves them into library options, calls the library and prints.

mod secrets;

use clap::{Parser, Subcommand};

/// KiwiStack online PKI and secrets tooling.
#[derive(Parser)]
#[command(
    name = "kiwictl",
    version,
    about,
    after_help = "Exit status: 0 success; 1 a file failed, did not verify or does not conform; 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// SOPS/age secrets in state repos (sops 3.x compatible).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Secrets(c) => secrets::run(c),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kiwictl: error: {e:#}");
            std::process::exit(1);
        }
    }
}
