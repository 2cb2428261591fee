//! `kiwictl`: thin command-line front end over the `kiwi_tooling` library.

use clap::Parser;

/// KiwiStack online PKI and secrets tooling.
#[derive(Parser)]
#[command(name = "kiwictl", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("kiwictl: no command given; see kiwictl --help");
    std::process::exit(2);
}
