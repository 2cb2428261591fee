//! A SOPS 3.x-compatible engine: files written here decrypt with the Go `sops`, and files
//! written by `sops` decrypt here, with age recipients and Shamir key groups.
//!
//! Layers, bottom up: [`value`] (Go/yaml.v3 typing), [`cipher`] (`ENC[...]` values),
//! [`shamir`] and [`agekeys`] (data-key wrapping), [`metadata`] (the `sops` block),
//! [`format`] (YAML/JSON/dotenv/binary with byte spans), [`engine`] (one document),
//! [`config`] (`.sops.yaml`), [`files`] (atomic rewrite) and [`tree`] (whole trees in parallel).

pub mod agekeys;
pub mod cipher;
mod comments;
pub mod config;
#[cfg(test)]
mod crash;
pub mod edit;
pub mod engine;
pub mod error;
pub mod exec;
pub mod files;
pub mod format;
pub mod keycmd;
pub mod metadata;
pub mod path;
pub mod request;
pub mod set;
pub mod shamir;
pub mod status;
pub mod tree;
pub mod value;

pub use agekeys::{AgeRecipient, Identities};
pub use engine::{encrypt, open, open_ignoring_mac, KeySpec, OpenDoc, Unlock};
pub use error::{Result, SopsError};
pub use format::FileFormat;
pub use metadata::Rules;
