//! `kiwi_signer`: the PKI core of KiwiStack's air-gapped root signer.
//!
//! The offline MSP root creates itself ([`ceremony::init`]), signs each customer's intermediate
//! CA under a written policy ([`ceremony::sign`]), revokes intermediates with root-signed CRLs
//! ([`ceremony::revoke`], [`ceremony::crl`]), hands a churning customer's intermediate over
//! ([`ceremony::handover`]) to a root the customer owns, which re-signs it
//! ([`ceremony::init::init_org`], [`ceremony::reroot`]), and records every signature in a
//! tamper-evident [`ledger`]. Every operation that changes the CA goes through one [`ceremony`] pipeline:
//! lock, verify the ledger, check the witness's head and the clock, plan and lint, confirm,
//! sign once per artifact through a [`backend::KeyBackend`] and verify, append to the ledger,
//! then write the outputs from the ledger entries.
//!
//! This crate has no network code, by design: it runs on an air-gapped laptop.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod algo;
pub mod backend;
pub mod ca;
pub mod callbacks;
pub mod ceremony;
pub mod certpolicy;
pub mod config_v1;
pub mod constraints;
pub mod csr;
pub mod eckey;
pub mod error;
pub mod fsutil;
pub mod hooks;
pub mod ledger;
pub mod lint;
pub mod pipeline;
pub mod policy;
pub mod preflight;
pub mod shell;
pub mod slug;
pub mod words;
pub mod x509;

pub use error::{Error, Result};
