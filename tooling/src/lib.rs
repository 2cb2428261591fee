//! `kiwi_tooling`: the online half of kiwi-pki.
//!
//! It runs on operators' workstations and in rotation jobs, never on the ceremony laptop: SOPS/age
//! secrets in customer state repos, intermediate key and CSR generation, installing signed
//! certificates where step-ca reads them, and the provisioning hooks around those events.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod churn;
pub mod crl;
pub mod expiry;
pub mod githook;
pub mod intermediate;
pub mod metrics;
pub mod onboard;
pub mod precommit;
pub mod registry;
pub mod seal;
pub mod sops;
pub mod staterepo;
pub mod stepca;
