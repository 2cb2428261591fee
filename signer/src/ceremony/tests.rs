//! Unit tests of the pipeline: its order, its refusals, and every self-check driven by a
//! faulty backend test double.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use rcgen::CertificateParams;
use time::{Duration, OffsetDateTime};

use super::crl::Crl;
use super::init::BackendSpec;
use super::revoke::Revoke;
use super::sign::SignRequest;
use super::*;
use crate::algo::{KeyAlgorithm, PublicKey};
use crate::backend::soft::{self, SoftKey};
use crate::backend::{BackendError, RcgenSigner, Secret};
use crate::callbacks::Scripted;
use crate::ledger::{self, Reason, Recorded};
use crate::slug::{Slug, Tier};

const PASS: &str = "unit test passphrase";

pub(super) fn yes() -> Scripted {
    Scripted {
        confirm: true,
        secret: PASS.into(),
    }
}

/// Counts the prompts, to prove what was (not) asked.
struct Counting {
    confirms: Cell<u32>,
    secrets: Cell<u32>,
}

impl Counting {
    fn new() -> Self {
        Counting {
            confirms: Cell::new(0),
            secrets: Cell::new(0),
        }
    }
}

impl Callbacks for Counting {
    fn confirm(&self, _summary: &str) -> Result<bool> {
        self.confirms.set(self.confirms.get() + 1);
        Ok(true)
    }
    fn secret(&self, _prompt: &str) -> Result<Secret> {
        self.secrets.set(self.secrets.get() + 1);
        Ok(Secret::new(PASS.into()))
    }
    fn notice(&self, _message: &str) {}
}

pub(super) fn fresh(now: OffsetDateTime) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
    let cb = yes();
    init(
        &dir,
        &policy,
        &BackendSpec::soft(),
        &Ceremony::new(&cb, now),
    )
    .expect("init");
    (tmp, dir)
}

pub(super) fn csr_for(key: &SoftKey) -> Vec<u8> {
    let signer = RcgenSigner::new(key);
    let params = CertificateParams::new(vec![]).expect("params");
    params
        .serialize_request(&signer)
        .expect("csr")
        .der()
        .to_vec()
}

pub(super) fn request(tmp: &tempfile::TempDir, csr: &[u8], slug: &str, out: &str) -> SignRequest {
    SignRequest {
        csr: csr.to_vec(),
        csr_origin: "unit.csr".into(),
        slug: Slug::parse(slug).expect("slug"),
        tier: Tier::Core,
        days: Some(365),
        out: tmp.path().join(out),
        shared: false,
    }
}

pub(super) fn ledger_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(ledger::FILE)).expect("ledger")
}

pub(super) fn go(
    dir: &Path,
    op: &dyn Operation,
    cb: &dyn Callbacks,
    now: OffsetDateTime,
) -> Result<Outcome> {
    run(dir, op, &Ceremony::new(cb, now))
}

#[test]
fn clock_behind_the_ledger_is_refused_and_nothing_changes() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
    let before = ledger_text(&dir);
    let req = request(&tmp, &csr, "acme", "a.pem");
    let early = now - Duration::hours(2);
    let err = go(&dir, &req, &yes(), early).expect_err("a clock behind the ledger");
    assert!(matches!(err, Error::ClockBehindLedger { .. }), "{err}");
    assert!(!req.out.exists());
    assert_eq!(before, ledger_text(&dir));
    let crl = Crl {
        out: tmp.path().join("c.pem"),
    };
    let revoke = Revoke {
        serial: Serial::random(),
        reason: Reason::Superseded,
        out: tmp.path().join("r.pem"),
    };
    for op in [&crl as &dyn Operation, &revoke] {
        assert!(matches!(
            go(&dir, op, &yes(), early),
            Err(Error::ClockBehindLedger { .. })
        ));
    }
    // With the clock right, the same request is signed, recorded, and exportable.
    let o = go(&dir, &req, &yes(), now).expect("sign");
    let state = crate::ca::verify_ledger(&dir, Some(&ExpectedHead::Hex(o.head))).expect("verify");
    assert_eq!(state.issued.len(), 1);
    let serial = o.serial.expect("serial");
    let again = tmp.path().join("again.pem");
    Ca::open(&dir)
        .expect("open")
        .export(&Recorded::Certificate(serial), &again)
        .expect("export");
    assert_eq!(
        std::fs::read(&again).expect("export"),
        std::fs::read(&req.out).expect("out")
    );
    let err = Ca::open(&dir)
        .expect("open")
        .export(&Recorded::Crl(7), &tmp.path().join("none.pem"))
        .expect_err("no such CRL");
    assert!(matches!(err, Error::NotRecorded { .. }), "{err}");
}

#[test]
fn refusals_are_typed_and_write_nothing() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP384));
    let no = Scripted {
        confirm: false,
        secret: PASS.into(),
    };
    let before = ledger_text(&dir);
    let declined = request(&tmp, &csr, "acme", "declined.pem");
    assert!(matches!(
        go(&dir, &declined, &no, now),
        Err(Error::NotConfirmed)
    ));
    assert!(!declined.out.exists());
    let mut long = request(&tmp, &csr, "acme", "long.pem");
    long.days = Some(100_000);
    assert!(matches!(
        go(&dir, &long, &yes(), now),
        Err(Error::DaysOutsidePolicy { days: 100_000, .. })
    ));
    assert_eq!(before, ledger_text(&dir));

    let issued = go(&dir, &request(&tmp, &csr, "acme", "a.pem"), &yes(), now).expect("sign");
    let serial = issued.serial.expect("serial");
    let before = ledger_text(&dir);
    let other = request(&tmp, &csr, "globex", "g.pem");
    let err = go(&dir, &other, &yes(), now).expect_err("key reuse");
    assert!(
        matches!(&err, Error::KeyOfAnotherCustomer { slug, .. } if slug.as_str() == "acme"),
        "{err}"
    );
    assert!(!other.out.exists());
    assert_eq!(before, ledger_text(&dir));
    let revoke = |out: &str| Revoke {
        serial: serial.clone(),
        reason: Reason::KeyCompromise,
        out: tmp.path().join(out),
    };
    go(&dir, &revoke("crl.pem"), &yes(), now).expect("revoke");
    let again = request(&tmp, &csr, "acme", "again.pem");
    let err = go(&dir, &again, &yes(), now).expect_err("compromised key");
    assert!(matches!(err, Error::KeyCompromised { .. }), "{err}");
    assert!(!again.out.exists());
    let err = go(&dir, &revoke("crl2.pem"), &yes(), now).expect_err("twice");
    assert!(matches!(err, Error::AlreadyRevoked { .. }), "{err}");
    let unknown = Revoke {
        serial: Serial::random(),
        reason: Reason::Superseded,
        out: tmp.path().join("crl3.pem"),
    };
    let err = go(&dir, &unknown, &yes(), now).expect_err("unknown serial");
    assert!(matches!(err, Error::NotIssued { .. }), "{err}");
    crate::ca::verify_ledger(&dir, None).expect("ledger verifies");
}

#[test]
fn a_wrong_passphrase_signs_nothing() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
    let before = ledger_text(&dir);
    let wrong = Scripted {
        confirm: true,
        secret: "a wrong passphrase here".into(),
    };
    let req = request(&tmp, &csr, "acme", "a.pem");
    let err = go(&dir, &req, &wrong, now).expect_err("wrong passphrase");
    assert!(
        matches!(err, Error::Backend(BackendError::WrongPassphrase(_))),
        "{err}"
    );
    assert!(!req.out.exists());
    assert_eq!(before, ledger_text(&dir));
}

#[test]
fn init_refuses_a_directory_that_holds_a_ca_or_anything_else() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
    let before = ledger_text(&dir);
    let cb = yes();
    let c = Ceremony::new(&cb, now);
    let err = init(&dir, &policy, &BackendSpec::soft(), &c).expect_err("second init");
    assert!(matches!(err, Error::CaExists { .. }), "{err}");
    assert_eq!(before, ledger_text(&dir));
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "x").expect("write");
    let err = init(&other, &policy, &BackendSpec::soft(), &c).expect_err("non-empty");
    assert!(matches!(err, Error::DirNotEmpty { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&other).expect("ls").count(), 1);
}

#[test]
fn a_locked_ca_and_an_uncreatable_output_are_refused_before_any_prompt() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let before = ledger_text(&dir);
    let cb = Counting::new();
    let lock = DirLock::acquire(&dir).expect("lock");
    let crl = Crl {
        out: tmp.path().join("c.pem"),
    };
    let err = go(&dir, &crl, &cb, now).expect_err("locked");
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(lock);
    let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
    let missing = request(&tmp, &csr, "acme", "no-such-dir/a.pem");
    let err = go(&dir, &missing, &cb, now).expect_err("missing directory");
    assert!(matches!(err, Error::OutputUnusable { .. }), "{err}");
    std::fs::write(tmp.path().join("taken.pem"), "x").expect("write");
    let taken = Crl {
        out: tmp.path().join("taken.pem"),
    };
    let err = go(&dir, &taken, &cb, now).expect_err("existing output");
    assert!(matches!(err, Error::OutputUnusable { .. }), "{err}");
    assert_eq!((cb.confirms.get(), cb.secrets.get()), (0, 0));
    assert_eq!(before, ledger_text(&dir));
    // Unlocked and with a good path, the same CA works (and asks once for each).
    go(&dir, &crl, &cb, now).expect("crl");
    assert_eq!((cb.confirms.get(), cb.secrets.get()), (1, 1));
}

#[test]
fn the_witness_head_catches_a_rolled_back_ledger() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
    let issued = go(&dir, &request(&tmp, &csr, "acme", "a.pem"), &yes(), now).expect("sign");
    let revoke = Revoke {
        serial: issued.serial.expect("serial"),
        reason: Reason::KeyCompromise,
        out: tmp.path().join("r.pem"),
    };
    let revoked = go(&dir, &revoke, &yes(), now).expect("revoke");
    // `head -n -2`: the revocation and its CRL cut off.
    let text = ledger_text(&dir);
    let lines: Vec<&str> = text.lines().collect();
    let cut: String = lines[..lines.len() - 2]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join(ledger::FILE), &cut).expect("cut");
    let words = ExpectedHead::parse(&head::first_words(&revoked.head)).expect("words");
    let cb = yes();
    let revoke_again = Revoke {
        out: tmp.path().join("r2.pem"),
        ..revoke
    };
    let sign_again = request(&tmp, &csr, "acme", "b.pem");
    let crl = Crl {
        out: tmp.path().join("c.pem"),
    };
    for expect in [ExpectedHead::Hex(revoked.head), words] {
        for op in [&sign_again as &dyn Operation, &revoke_again, &crl] {
            let c = Ceremony {
                witness: Witness {
                    expect: Some(expect.clone()),
                    head_file: None,
                },
                ..Ceremony::new(&cb, now)
            };
            let err = run(&dir, op, &c).expect_err("rolled back");
            assert!(matches!(err, Error::HeadMismatch { .. }), "{err}");
        }
    }
    assert_eq!(cut, ledger_text(&dir));
    for out in ["b.pem", "r2.pem", "c.pem"] {
        assert!(!tmp.path().join(out).exists());
    }
}

/// What a faulty backend does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    OtherKey,
    Malformed,
    DifferentBytes,
    FailAfterSigning,
}

/// A backend test double: the CA's real key, a fault, and an anchor kept in memory.
struct Double {
    key: SoftKey,
    other: SoftKey,
    fault: Cell<Fault>,
    signatures: Cell<u32>,
    anchor: RefCell<Option<Anchor>>,
}

impl Double {
    fn of(dir: &Path) -> Self {
        let key = SoftKey::open(&soft::key_path(dir), &Secret::new(PASS.into())).expect("root key");
        let other = SoftKey::generate(key.algorithm());
        Double {
            key,
            other,
            fault: Cell::new(Fault::None),
            signatures: Cell::new(0),
            anchor: RefCell::new(None),
        }
    }
}

impl KeyBackend for &Double {
    fn describe(&self) -> String {
        "the test double".into()
    }
    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, BackendError> {
        self.signatures.set(self.signatures.get() + 1);
        match self.fault.get() {
            Fault::None => self.key.sign(msg),
            Fault::OtherKey => self.other.sign(msg),
            Fault::Malformed => Ok(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            Fault::DifferentBytes => {
                let mut m = msg.to_vec();
                m.push(0);
                self.key.sign(&m)
            }
            Fault::FailAfterSigning => {
                self.key.sign(msg)?;
                Err(BackendError::SignFailed {
                    backend: "test double".into(),
                    detail: "lost the signature".into(),
                })
            }
        }
    }
    fn remembers(&self) -> bool {
        true
    }
    fn read_anchor(&self) -> std::result::Result<Option<Anchor>, BackendError> {
        Ok(self.anchor.borrow().clone())
    }
    fn write_anchor(&self, anchor: &Anchor) -> std::result::Result<(), BackendError> {
        *self.anchor.borrow_mut() = Some(anchor.clone());
        Ok(())
    }
}

fn with_double(dir: &Path, op: &dyn Operation, double: &Double) -> Result<Outcome> {
    let cb = yes();
    let c = Ceremony::new(&cb, OffsetDateTime::now_utc());
    run_with(dir, op, &c, &|_: &Ca| Ok(Box::new(double)))
}

/// Wraps an operation so its build asks the root key for a second signature.
struct SignsTwice(Crl);

impl Operation for SignsTwice {
    fn events(&self) -> &'static [EventKind] {
        self.0.events()
    }
    fn hook_data(&self) -> EventData {
        self.0.hook_data()
    }
    fn plan<'a>(&'a self, ca: &'a Ca, now: OffsetDateTime) -> Result<Plan<'a>> {
        let mut plan = self.0.plan(ca, now)?;
        for step in &mut plan.steps {
            if let Step::Sign(a) = step {
                let build = std::mem::replace(&mut a.build, Box::new(|_| Ok(Vec::new())));
                a.build = Box::new(move |signer: &RcgenSigner<'_>| {
                    rcgen::SigningKey::sign(signer, b"a second message")?;
                    build(signer)
                });
            }
        }
        Ok(plan)
    }
}

#[test]
fn every_self_check_refuses_a_faulty_backend_and_nothing_is_recorded() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let double = Double::of(&dir);
    let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
    let before = ledger_text(&dir);
    for (n, fault) in [
        Fault::OtherKey,
        Fault::Malformed,
        Fault::DifferentBytes,
        Fault::FailAfterSigning,
    ]
    .into_iter()
    .enumerate()
    {
        double.fault.set(fault);
        let sign = request(&tmp, &csr, "acme", &format!("s{n}.pem"));
        let crl = Crl {
            out: tmp.path().join(format!("c{n}.pem")),
        };
        for (op, out) in [(&sign as &dyn Operation, &sign.out), (&crl, &crl.out)] {
            let signed = double.signatures.get();
            let err = with_double(&dir, op, &double).expect_err("a faulty backend");
            match fault {
                Fault::FailAfterSigning => assert!(
                    matches!(err, Error::Backend(BackendError::SignFailed { .. })),
                    "{fault:?}: {err}"
                ),
                _ => assert!(matches!(err, Error::SelfCheck(_)), "{fault:?}: {err}"),
            }
            assert_eq!(double.signatures.get(), signed + 1, "{fault:?}");
            assert!(!out.exists(), "{fault:?}");
            assert_eq!(before, ledger_text(&dir), "{fault:?}");
        }
    }
    // Two signatures asked for one artifact.
    double.fault.set(Fault::None);
    let twice = SignsTwice(Crl {
        out: tmp.path().join("twice.pem"),
    });
    let err = with_double(&dir, &twice, &double).expect_err("two signatures");
    assert!(
        matches!(&err, Error::SelfCheck(m) if m.contains("2 signatures")),
        "{err}"
    );
    assert!(!twice.0.out.exists());
    assert_eq!(before, ledger_text(&dir));
    // A key that is not root.pem's is refused before it signs anything.
    let stranger = Double {
        key: SoftKey::generate(KeyAlgorithm::EcdsaP256),
        ..Double::of(&dir)
    };
    let err = with_double(
        &dir,
        &Crl {
            out: tmp.path().join("s.pem"),
        },
        &stranger,
    )
    .expect_err("another key");
    assert!(
        matches!(err, Error::Backend(BackendError::KeyMismatch { .. })),
        "{err}"
    );
    assert_eq!(stranger.signatures.get(), 0);
    // The honest double: exactly one signature, recorded and written.
    let signed = double.signatures.get();
    let ok = with_double(
        &dir,
        &Crl {
            out: tmp.path().join("ok.pem"),
        },
        &double,
    )
    .expect("crl");
    assert_eq!(double.signatures.get(), signed + 1);
    assert_eq!(ok.written, vec![tmp.path().join("ok.pem")]);
    crate::ca::verify_ledger(&dir, None).expect("verifies");
}

#[test]
fn the_device_anchor_refuses_a_rolled_back_ledger_and_follows_one_ahead() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let double = Double::of(&dir);
    let out = |n: &str| tmp.path().join(n);
    let first = with_double(&dir, &Crl { out: out("1.pem") }, &double).expect("crl 1");
    assert_eq!(
        *double.anchor.borrow(),
        Some(Anchor {
            head: first.head,
            crl_number: 1
        })
    );
    let after_first = ledger_text(&dir);
    let second = with_double(&dir, &Crl { out: out("2.pem") }, &double).expect("crl 2");
    assert_eq!(
        double
            .anchor
            .borrow()
            .as_ref()
            .map(|a| (a.head, a.crl_number)),
        Some((second.head, 2))
    );

    // Rolled back to before the device's head: refused, naming both heads.
    let newest = ledger_text(&dir);
    std::fs::write(dir.join(ledger::FILE), &after_first).expect("roll back");
    let err = with_double(&dir, &Crl { out: out("3.pem") }, &double).expect_err("rolled back");
    match &err {
        Error::LedgerBehindDevice {
            device_head,
            ledger_head,
            ..
        } => {
            assert!(device_head.contains(&second.head.hex()), "{err}");
            assert!(ledger_head.contains(&first.head.hex()), "{err}");
        }
        other => panic!("expected LedgerBehindDevice, got {other}"),
    }
    assert!(
        err.to_string().contains("restore the newest backup")
            || err.to_string().contains("Restore the newest backup")
    );
    assert!(!out("3.pem").exists());
    assert_eq!(after_first, ledger_text(&dir));

    // The newest ledger, with a device that has seen a higher CRL number: refused.
    std::fs::write(dir.join(ledger::FILE), &newest).expect("restore");
    *double.anchor.borrow_mut() = Some(Anchor {
        head: second.head,
        crl_number: 9,
    });
    let err = with_double(&dir, &Crl { out: out("4.pem") }, &double).expect_err("crl number");
    assert!(
        matches!(
            err,
            Error::CrlNumberBehindDevice {
                device_number: 9,
                ledger_number: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(!out("4.pem").exists());

    // A ledger ahead of the device (a crash after the append): accepted, device updated.
    *double.anchor.borrow_mut() = Some(Anchor {
        head: first.head,
        crl_number: 1,
    });
    let third = with_double(&dir, &Crl { out: out("5.pem") }, &double).expect("ahead");
    assert_eq!(
        double
            .anchor
            .borrow()
            .as_ref()
            .map(|a| (a.head, a.crl_number)),
        Some((third.head, 3))
    );
}

#[test]
fn outputs_come_from_the_ledger_entry_and_hooks_run_inside_the_pipeline() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let seen = tmp.path().join("seen.json");
    let hooks_text = format!(
        "hooks:\n  - name: veto\n    event: crl_issued\n    phase: pre\n    timeout_secs: 5\n    run: [sh, -c, 'test -e {go}']\n  - name: post\n    event: crl_issued\n    phase: post\n    timeout_secs: 5\n    run: [sh, -c, 'cat > {seen}']\n",
        go = tmp.path().join("GO").display(),
        seen = seen.display()
    );
    let hooks = Hooks::parse("hooks.yaml", &hooks_text, tmp.path()).expect("hooks");
    let cb = Counting::new();
    let c = Ceremony {
        hooks: Some(&hooks),
        ..Ceremony::new(&cb, now)
    };
    let crl = Crl {
        out: tmp.path().join("c.der"),
    };
    let before = ledger_text(&dir);
    let err = run(&dir, &crl, &c).expect_err("vetoed");
    assert!(matches!(err, Error::Hook(_)), "{err}");
    // Vetoed before the confirmation and before the key was asked for.
    assert_eq!((cb.confirms.get(), cb.secrets.get()), (0, 0));
    assert_eq!(before, ledger_text(&dir));
    std::fs::write(tmp.path().join("GO"), "").expect("go");
    let o = run(&dir, &crl, &c).expect("crl");
    let ca = Ca::open(&dir).expect("open");
    let recorded = ca.ledger().artifact(&Recorded::Crl(1)).expect("recorded");
    assert_eq!(
        std::fs::read(&crl.out).expect("out"),
        recorded,
        "DER output"
    );
    let event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&seen).expect("post hook ran")).expect("json");
    assert_eq!(event["ledger_head"], o.head.hex());
    assert_eq!(event["details"]["crl_number"], "1");
    assert_eq!(
        event["sha256"]["crl"],
        crate::words::Fingerprint::of(&recorded).hex()
    );
}

/// A fixture machine for the air-gap preflight: loopback, plus `eth0` up with a default route
/// when `connected`.
fn host(dir: &Path, connected: bool) -> crate::preflight::Host {
    let mut ifaces = vec![("lo", "0x9")];
    let mut route =
        String::from("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n");
    if connected {
        ifaces.push(("eth0", "0x1003"));
        route.push_str("eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\n");
    }
    for (name, flags) in ifaces {
        let d = dir.join("sys/class/net").join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("flags"), format!("{flags}\n")).expect("flags");
        std::fs::write(d.join("operstate"), "up\n").expect("operstate");
    }
    std::fs::create_dir_all(dir.join("proc/net")).expect("mkdir");
    std::fs::write(dir.join("proc/net/route"), route).expect("route");
    crate::preflight::Host::at(dir)
}

/// The ledger entries' `preflight` fields, oldest first.
fn preflight_fields(dir: &Path) -> Vec<serde_json::Value> {
    ledger_text(dir)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("entry");
            v["preflight"].clone()
        })
        .collect()
}

#[test]
fn a_hardware_root_on_a_connected_machine_is_refused_before_it_is_opened_unless_allowed() {
    let now = OffsetDateTime::now_utc();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
    let (online, offline) = (tmp.path().join("online"), tmp.path().join("offline"));
    let online = host(&online, true);
    let offline = host(&offline, false);
    let cb = yes();
    let on = |host: &crate::preflight::Host, allow_network: bool| Ceremony {
        allow_network,
        host: host.clone(),
        ..Ceremony::new(&cb, now)
    };
    // The soft backend warns only, and records what it found.
    init(&dir, &policy, &BackendSpec::soft(), &on(&online, false)).expect("soft init goes ahead");
    let first = &preflight_fields(&dir)[0];
    assert_eq!(first["overridden"], "soft_backend", "{first}");
    assert!(
        first["failed"].to_string().contains("eth0 is up"),
        "{first}"
    );
    // The same CA as if its key were on a token: ca.toml says pkcs11 (the test opens the
    // soft key in its place, and counts the openings).
    let toml_path = dir.join(crate::ca::files::CONFIG);
    let toml = std::fs::read_to_string(&toml_path).expect("ca.toml");
    // `[backend]` is the last table of ca.toml (format 2): replace it with a token's.
    let toml = toml[..toml.find("[backend]").expect("a [backend] table")].to_string()
        + "[backend]\ntype = \"pkcs11\"\nmodule = \"/nonexistent.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\n";
    std::fs::write(&toml_path, toml).expect("ca.toml");
    let opened = Cell::new(0);
    let open = |_: &Ca| -> Result<Box<dyn KeyBackend + '_>> {
        opened.set(opened.get() + 1);
        Ok(Box::new(
            SoftKey::open(&soft::key_path(&dir), &Secret::new(PASS.into())).expect("root key"),
        ))
    };
    let crl = Crl {
        out: tmp.path().join("c1.pem"),
    };
    let before = ledger_text(&dir);
    let err = run_with(&dir, &crl, &on(&online, false), &open).expect_err("refused");
    assert!(
        matches!(&err, Error::NotAirGapped(f) if f.iter().any(|c| c.detail.contains("eth0"))),
        "{err}"
    );
    assert_eq!(opened.get(), 0, "the key was opened");
    assert_eq!(before, ledger_text(&dir));
    assert!(!crl.out.exists());

    run_with(&dir, &crl, &on(&online, true), &open).expect("--allow-network goes ahead");
    assert_eq!(opened.get(), 1);
    let last = preflight_fields(&dir).pop().expect("entry");
    assert_eq!(last["overridden"], "allow_network", "{last}");
    let failed = last["failed"].as_array().expect("failed checks");
    assert!(
        failed.iter().any(|c| c["name"] == "network interfaces")
            && failed.iter().any(|c| c["name"] == "routes"),
        "{last}"
    );
    // An offline machine needs no flag, and its entry records nothing.
    let crl2 = Crl {
        out: tmp.path().join("c2.pem"),
    };
    run_with(&dir, &crl2, &on(&offline, false), &open).expect("offline");
    assert!(preflight_fields(&dir).pop().expect("entry").is_null());
    crate::ca::verify_ledger(&dir, None).expect("the ledger verifies with the records");
}

/// The reason code the CRL at `path` (PEM) gives `serial`.
pub(super) fn crl_reason(path: &Path, serial: &Serial) -> Option<u8> {
    let pem = pem::parse(std::fs::read(path).expect("crl")).expect("pem");
    let crl = crate::x509::parse_crl(pem.contents()).expect("crl parses");
    let code = crl
        .iter_revoked_certificates()
        .find(|r| Serial::from_der_integer(r.raw_serial()) == *serial)
        .and_then(|r| r.reason_code())
        .map(|(_, code)| code.0);
    code
}

#[test]
fn compromise_is_forever() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
    let revoke = |serial: &Serial, reason: Reason, out: &str| Revoke {
        serial: serial.clone(),
        reason,
        out: tmp.path().join(out),
    };
    // cACompromise blocks re-certifying the key exactly as keyCompromise does.
    let first = go(&dir, &request(&tmp, &csr, "acme", "a.pem"), &yes(), now).expect("sign");
    let first = first.serial.expect("serial");
    go(
        &dir,
        &revoke(&first, Reason::CaCompromise, "r1.pem"),
        &yes(),
        now,
    )
    .expect("revoke");
    let again = request(&tmp, &csr, "acme", "again.pem");
    let err = go(&dir, &again, &yes(), now).expect_err("compromised");
    assert!(
        matches!(&err, Error::KeyCompromised { serial, reason: "cACompromise" } if *serial == first),
        "{err}"
    );
    assert!(!again.out.exists());
    // A compromise never becomes anything else, not even the other compromise.
    for reason in [Reason::Superseded, Reason::KeyCompromise] {
        let err = go(&dir, &revoke(&first, reason, "x.pem"), &yes(), now).expect_err("final");
        assert!(matches!(err, Error::AlreadyRevoked { .. }), "{err}");
    }

    // superseded, cessationOfOperation and affiliationChanged can later become keyCompromise,
    // and only that.
    for (n, old) in [
        Reason::Superseded,
        Reason::CessationOfOperation,
        Reason::AffiliationChanged,
    ]
    .into_iter()
    .enumerate()
    {
        let now = now + Duration::minutes(2 * n as i64);
        let csr = csr_for(&SoftKey::generate(KeyAlgorithm::EcdsaP256));
        let o = go(
            &dir,
            &request(&tmp, &csr, "acme", &format!("s{n}.pem")),
            &yes(),
            now,
        );
        let serial = o.expect("sign").serial.expect("serial");
        let crl = revoke(&serial, old, &format!("old{n}.pem"));
        go(&dir, &crl, &yes(), now).expect("revoke");
        assert_eq!(crl_reason(&crl.out, &serial), Some(old.rcgen() as u8));
        // Not compromised yet: the key may be certified again.
        let re = request(&tmp, &csr, "acme", &format!("re{n}.pem"));
        go(&dir, &re, &yes(), now).expect("a retired key is not a compromised one");
        for other in [Reason::AffiliationChanged, Reason::CaCompromise, old] {
            let err = go(&dir, &revoke(&serial, other, "y.pem"), &yes(), now).expect_err("no");
            assert!(matches!(err, Error::AlreadyRevoked { .. }), "{err}");
        }
        let before = Ca::open(&dir).expect("open").state().revoked[&serial].clone();
        let later = now + Duration::minutes(1);
        let kc = revoke(&serial, Reason::KeyCompromise, &format!("kc{n}.pem"));
        go(&dir, &kc, &yes(), later).expect("becomes keyCompromise");
        assert_eq!(
            crl_reason(&kc.out, &serial),
            Some(1),
            "keyCompromise is code 1"
        );
        let state = Ca::open(&dir).expect("open").state().clone();
        assert_eq!(state.revoked[&serial].reason, Reason::KeyCompromise);
        assert_eq!(
            state.revoked[&serial].revoked_at, before.revoked_at,
            "the revocation date stays the first"
        );
        let text = ledger_text(&dir);
        let change: serde_json::Value =
            serde_json::from_str(text.lines().rev().nth(1).expect("entry")).expect("json");
        assert_eq!(
            change["event"]["revoked"]["replaces"],
            old.name(),
            "{change}"
        );
        assert_eq!(change["event"]["revoked"]["reason"], "keyCompromise");
        // Now the key is compromised for ever.
        let re = request(&tmp, &csr, "acme", &format!("re2{n}.pem"));
        let err = go(&dir, &re, &yes(), later).expect_err("compromised");
        assert!(matches!(err, Error::KeyCompromised { .. }), "{err}");
        let err = go(
            &dir,
            &revoke(&serial, Reason::KeyCompromise, "z.pem"),
            &yes(),
            later,
        )
        .expect_err("once");
        assert!(matches!(err, Error::AlreadyRevoked { .. }), "{err}");
    }
    crate::ca::verify_ledger(&dir, None).expect("the ledger verifies");

    // The ledger refuses, in a well-formed chain, a change the pipeline would not make: a
    // compromise undone, or a second revocation that does not say what it replaces.
    let ca = Ca::open(&dir).expect("open");
    let r = ca.state().revoked[&first].clone();
    for (reason, replaces) in [
        (Reason::Superseded, Some(Reason::CaCompromise)),
        (Reason::KeyCompromise, Some(Reason::CaCompromise)),
        (Reason::KeyCompromise, None),
    ] {
        let forged = Event::Revoked {
            serial: first.clone(),
            slug: r.slug.clone(),
            reason,
            revoked_at: r.revoked_at.clone(),
            replaces,
        };
        let (lines, _) = ca
            .ledger()
            .new_lines(vec![forged], now + Duration::hours(1), None);
        let text = format!("{}{lines}", ca.ledger().text());
        let err = ledger::verify_text("l", &text).expect_err("forged change");
        assert!(
            err.message.contains("not a permitted change") || err.message.contains("revoked twice"),
            "{err}"
        );
    }
}

#[test]
fn a_crl_never_outlives_the_root() {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds");
    let root_days = crate::policy::load_root(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml"),
    )
    .expect("root policy")
    .validity_days;
    // A root made long ago, with two days left: less than the CRL schedule (180 days).
    let made = now - Duration::days(i64::from(root_days) - 2);
    let (tmp, dir) = fresh(made);
    let root_end = Ca::open(&dir).expect("open").root_window().1;
    assert_eq!(
        root_end,
        (made + Duration::days(i64::from(root_days))).unix_timestamp()
    );
    let crl = Crl {
        out: tmp.path().join("c.pem"),
    };
    go(&dir, &crl, &yes(), now).expect("a CRL in the root's last days");
    let pem = pem::parse(std::fs::read(&crl.out).expect("crl")).expect("pem");
    let parsed = crate::x509::parse_crl(pem.contents()).expect("parse");
    let next = parsed.tbs_cert_list.next_update.expect("nextUpdate");
    assert_eq!(next.timestamp(), root_end, "clamped to the root's notAfter");
    let state = Ca::open(&dir).expect("open").state().clone();
    assert_eq!(
        state.last_crl.expect("recorded").next_update,
        ledger::fmt_time(OffsetDateTime::from_unix_timestamp(root_end).expect("time"))
    );
    // Once the root has expired it signs no CRL at all.
    let late = Crl {
        out: tmp.path().join("late.pem"),
    };
    let before = ledger_text(&dir);
    let err = go(&dir, &late, &yes(), now + Duration::days(3)).expect_err("expired root");
    assert!(matches!(err, Error::RootExpired { .. }), "{err}");
    assert_eq!(before, ledger_text(&dir));
    assert!(!late.out.exists());
}

#[test]
fn a_ceremony_script_opens_the_key_once_and_asks_before_each_step() {
    let now = OffsetDateTime::now_utc();
    let (tmp, dir) = fresh(now);
    for (name, alg) in [
        ("a", KeyAlgorithm::EcdsaP256),
        ("b", KeyAlgorithm::EcdsaP384),
    ] {
        let csr = csr_for(&SoftKey::generate(alg));
        std::fs::write(tmp.path().join(format!("{name}.csr")), csr).expect("csr");
    }
    let file = tmp.path().join("signing.yaml");
    std::fs::write(
        &file,
        "kind: signing\noperator: Ana\nwitnesses: [Ben]\ndevice: {backend: soft}\nsteps:\n  \
         - sign: {csr: a.csr, slug: acme, tier: core, out: a.pem}\n  \
         - sign: {csr: b.csr, slug: globex, tier: core, out: b.pem}\ncrl: {out: crl.pem}\n",
    )
    .expect("ceremony file");
    let s = script::Script::load(&file).expect("valid file");
    let cb = Counting::new();
    let exe = script::Binary(std::env::current_exe().expect("test binary"));
    let ran = script::run(
        &s,
        &dir,
        &tmp.path().join("t"),
        &exe,
        &Ceremony::new(&cb, now),
    )
    .expect("the ceremony runs");
    assert_eq!(cb.secrets.get(), 1, "the key was opened more than once");
    assert_eq!(cb.confirms.get(), 3, "one confirmation per step");
    assert_eq!(ran.transcript.steps.len(), 3);
    let last = ledger_text(&dir).lines().last().map(str::to_string);
    assert!(
        last.is_some_and(
            |l| l.contains("ceremony_closed") && l.contains(&ran.transcript_sha256.hex())
        ),
        "the ledger's newest entry does not close the transcript"
    );
    assert_eq!(Ca::open(&dir).expect("open").state().head, ran.head);
}
