//! Cost does not grow with the CA's age: `status` and `crl` on a CA with a 10-entry ledger and
//! on one with a 10,000-entry ledger, which must stay within 100 ms of each other.
//!
//! The entries are real: intermediate certificates signed by the CA's root key, generated in
//! this process and appended as one ledger text (not one process per entry). `crl` runs the
//! whole pipeline (lock, chain check, plan and lint, sign, verify, durable append, output) with
//! the root key opened once, so the passphrase's scrypt does not drown the ledger's cost.
//! Exits non-zero when the goal is missed.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, GeneralSubtree, Issuer, KeyIdMethod,
    NameConstraints, SerialNumber,
};
use time::OffsetDateTime;

use kiwi_signer::algo::KeyAlgorithm;
use kiwi_signer::backend::soft::{self, SoftKey};
use kiwi_signer::backend::{KeyBackend, RcgenSigner, Secret};
use kiwi_signer::ca::Ca;
use kiwi_signer::callbacks::Scripted;
use kiwi_signer::ceremony::{self, crl::Crl, init::BackendSpec, Ceremony};
use kiwi_signer::ledger::{self, Check, Event};
use kiwi_signer::slug::{Slug, Tier};
use kiwi_signer::x509::Serial;

const PASS: &str = "benchmark passphrase";
const GOAL: Duration = Duration::from_millis(100);
const RUNS: usize = 15;

fn make_ca(dir: &Path, entries: usize, cb: &Scripted, now: OffsetDateTime) -> SoftKey {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
    ceremony::init(dir, &policy, &BackendSpec::soft(), &Ceremony::new(cb, now)).expect("init");
    let root = SoftKey::open(&soft::key_path(dir), &Secret::new(PASS.into())).expect("root key");
    let ca = Ca::open(dir).expect("open");
    let subject = SoftKey::generate(KeyAlgorithm::EcdsaP256);
    let signer = RcgenSigner::new(&root);
    let mut issuer_params = CertificateParams::default();
    issuer_params.distinguished_name = DistinguishedName::new();
    issuer_params
        .distinguished_name
        .push(DnType::CommonName, "issuer");
    issuer_params.key_identifier_method = KeyIdMethod::PreSpecified(root.public_key().key_id());
    let issuer = Issuer::from_params(&issuer_params, &signer);
    let slug = Slug::parse("bench").expect("slug");
    let events: Vec<Event> = (1..entries)
        .map(|i| {
            let serial = Serial::random();
            let mut p = CertificateParams::default();
            p.serial_number = Some(SerialNumber::from_slice(serial.bytes()));
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name
                .push(DnType::CommonName, format!("bench {i}"));
            // The ledger check holds the recorded slug to the permitted DNS subtrees.
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DnsName("bench.example".into())],
                excluded_subtrees: Vec::new(),
            });
            let der = p
                .signed_by(subject.public_key(), &issuer)
                .expect("certificate")
                .der()
                .to_vec();
            let (artifact_sha256, artifact) = ledger::encode_artifact(&der);
            Event::IntermediateIssued {
                serial,
                slug: slug.clone(),
                tier: Tier::Core,
                subject: format!("CN=bench {i}"),
                not_after: ledger::fmt_time(now),
                key_id: hex::encode(subject.public_key().key_id()),
                csr_sha256: "0".repeat(64),
                policy_sha256: "0".repeat(64),
                artifact_sha256,
                artifact,
                shared: false,
            }
        })
        .collect();
    ca.ledger().append(events, now, None).expect("append");
    // The generated ledger is a real one: it passes the full check.
    Ca::open_checked(dir, Check::Full).expect("the generated ledger verifies");
    root
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn measure(dir: &Path, root: &SoftKey, cb: &Scripted) -> (Duration, Duration) {
    let now = OffsetDateTime::now_utc();
    let status: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            Ca::open(dir).expect("open").status(now).expect("status");
            t.elapsed()
        })
        .collect();
    let out = tempfile::tempdir().expect("tempdir");
    let c = Ceremony::new(cb, now);
    let crl: Vec<Duration> = (0..RUNS)
        .map(|i| {
            let op = Crl {
                out: out.path().join(format!("{i}.crl")),
            };
            let t = Instant::now();
            ceremony::run_with(dir, &op, &c, &|_| Ok(Box::new(Lent(root)))).expect("crl");
            t.elapsed()
        })
        .collect();
    (median(status), median(crl))
}

/// The root key, opened once and lent to each run.
struct Lent<'a>(&'a SoftKey);

impl KeyBackend for Lent<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn public_key(&self) -> &kiwi_signer::algo::PublicKey {
        self.0.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, kiwi_signer::backend::BackendError> {
        self.0.sign(msg)
    }
}

fn main() {
    let cb = Scripted {
        confirm: true,
        secret: PASS.into(),
    };
    let now = OffsetDateTime::now_utc();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut results = Vec::new();
    for entries in [10, 10_000] {
        let dir = tmp.path().join(format!("ca-{entries}"));
        let t = Instant::now();
        let root = make_ca(&dir, entries, &cb, now);
        let size = std::fs::metadata(dir.join(ledger::FILE)).map_or(0, |m| m.len());
        println!(
            "{entries:>6} entries ({:.1} MB ledger) generated in {:.1?}",
            size as f64 / 1e6,
            t.elapsed()
        );
        let (status, crl) = measure(&dir, &root, &cb);
        println!(
            "{entries:>6} entries: status {status:>10.1?}   crl {crl:>10.1?}   (median of {RUNS})"
        );
        results.push((status, crl));
    }
    let (small, big) = (results[0], results[1]);
    let status_gap = big.0.saturating_sub(small.0);
    let crl_gap = big.1.saturating_sub(small.1);
    println!("difference: status {status_gap:.1?}, crl {crl_gap:.1?} (goal: under {GOAL:?})");
    if status_gap >= GOAL || crl_gap >= GOAL {
        eprintln!("goal missed: a 10,000-entry ledger costs {GOAL:?} or more per command");
        std::process::exit(1);
    }
}
