//! `kiwi_signer`: the PKI core of KiwiStack's air-gapped root signer.
//!
//! The offline MSP root creates itself ([`ca::init`]), signs each customer's intermediate CA
//! under a written policy ([`ca::Ca::sign`]), revokes intermediates with root-signed CRLs
//! ([`ca::Ca::revoke`], [`ca::Ca::crl`]), and records every signature in a tamper-evident
//! [`ledger`]. Every artifact goes through one [`pipeline`]: build, lint, sign once through a
//! [`backend::KeyBackend`], re-parse and verify, write with create_new, append to the ledger.
//!
//! This crate has no network code, by design: it runs on an air-gapped laptop.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod algo;
pub mod backend;
pub mod ca;
pub mod callbacks;
pub mod config_v1;
pub mod csr;
pub mod eckey;
pub mod error;
pub mod fsutil;
pub mod hooks;
pub mod ledger;
pub mod lint;
mod pipeline;
pub mod policy;
pub mod preflight;
pub mod slug;
pub mod words;
pub mod x509;

pub use error::{Error, Result};
