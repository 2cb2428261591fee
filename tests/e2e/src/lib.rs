//! Shared helpers for the end-to-end tests: locating our binaries and the external tools.

pub mod sops;
