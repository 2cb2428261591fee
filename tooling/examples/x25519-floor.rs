//! The X25519 floor of a tree rotation, for `bench/sops-rotate.sh`: what the data keys alone
//! cost. Per file, one unwrap of the old data key (one scalar multiplication) and one wrap of
//! the new one per recipient (two: the ephemeral key and the shared secret), made with the
//! same age calls the engine makes, timed in this process on one thread and divided by the
//! cores. Prints the floor in seconds.
//!
//!     x25519-floor FILES [RECIPIENTS]

#![forbid(unsafe_code)]

use std::time::Instant;

use age::secrecy::ExposeSecret;
use kiwi_tooling::sops::{AgeRecipient, Identities};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().unwrap_or_else(|| "2000".into()).parse()?;
    let recipients: usize = args.next().unwrap_or_else(|| "1".into()).parse()?;
    let id = age::x25519::Identity::generate();
    let mut ids = Identities::empty();
    ids.add_text(id.to_string().expose_secret(), "x25519-floor")?;
    let to = AgeRecipient::parse(&id.to_public().to_string())?;
    let key = [7u8; 32];
    let wrapped = to.wrap(&key)?;
    let start = Instant::now();
    for _ in 0..files {
        anyhow::ensure!(ids.unwrap(&wrapped).is_some(), "unwrap failed");
        for _ in 0..recipients {
            to.wrap(&key)?;
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{:.3}", start.elapsed().as_secs_f64() / cores as f64);
    Ok(())
}
