//! The YubiKey backend over the real stack: the `yubikey` crate talks PC/SC to a real `pcscd`
//! whose `vsmartcard-vpcd` reader holds our virtual PIV card (tests/virtual-piv). No mock.
//!
//! `scripts/test-hardware` starts pcscd and runs this with `KIWI_TEST_VPCD=1`; then a card that
//! does not appear is a failure. Without the variable (a plain `cargo test`) the test says so
//! and does nothing. One test function: the card sits on one vpcd port, so the steps run in
//! order.
//!
//! The device's ledger anchor is driven through the library (`KeyBackend::read_anchor` and
//! `write_anchor`): written, read back, read by `yubico-piv-tool`, and still there after the
//! card was removed and inserted again; with a PIN-protected management key (set up as
//! `ykman piv access change-management-key --generate --protect` does) nobody is asked for the
//! management key, without one it is asked before anything is signed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use kiwi_e2e::{
    bin, ec_csr, openssl, openssl_ok, path_str, run, stderr, stdout, workspace_root, write_private,
};
use kiwi_signer::backend::{Anchor, KeyBackend, Secret};
use kiwi_signer::callbacks::Callbacks;
use kiwi_signer::words::Fingerprint;

const PIN: &str = "123456";
const FACTORY_MGM: &str = "010203040506070801020304050607080102030405060708";

/// The operator at the table, for the library: the PIN, and the management key if they have it.
struct Operator {
    mgm: Option<&'static str>,
}

impl Callbacks for Operator {
    fn confirm(&self, _summary: &str) -> kiwi_signer::Result<bool> {
        Ok(true)
    }
    fn secret(&self, _prompt: &str) -> kiwi_signer::Result<Secret> {
        Ok(Secret::new(PIN.into()))
    }
    fn management_key(&self, prompt: &str) -> kiwi_signer::Result<Secret> {
        match self.mgm {
            Some(k) => Ok(Secret::new(k.into())),
            None => Err(kiwi_signer::Error::io(
                "management key",
                std::io::Error::other(format!("asked for `{prompt}`, which nobody here has")),
                "",
            )),
        }
    }
    fn notice(&self, _message: &str) {}
}

/// Opens the root key of the CA in `dir` through the library.
fn open_key<'a>(dir: &Path, op: &'a Operator) -> Box<dyn KeyBackend + 'a> {
    let ca = kiwi_signer::ca::Ca::open(dir).expect("open the CA");
    match ca.config().backend.open(dir, op) {
        Ok(k) => k,
        Err(e) => panic!("open the YubiKey: {e}"),
    }
}

/// The anchor object as `yubico-piv-tool` reads it.
fn anchor_object(reader: &str) -> String {
    let o = run(Command::new("yubico-piv-tool").args([
        "-r",
        reader,
        "-a",
        "read-object",
        "--id",
        "0x5f4b57",
        "-f",
        "binary",
    ]));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What `ykman piv access change-management-key --generate --protect` does: a random
/// management key, stored in the PIN-protected PRINTED object and flagged in ADMIN DATA.
fn protect_management_key(serial: u32) {
    let mut yk = yubikey::YubiKey::open_by_serial(yubikey::Serial(serial)).expect("open the card");
    yk.verify_pin(PIN.as_bytes()).expect("PIN");
    yk.authenticate(yubikey::MgmKey::default())
        .expect("the factory management key");
    yubikey::MgmKey::generate()
        .set_protected(&mut yk)
        .expect("set a PIN-protected management key");
}

const READER: &str = "Virtual PCD";

struct Card {
    child: Child,
    reader: String,
}

impl Card {
    /// Starts a card on vpcd's first reader (port 35963).
    fn start(state: &Path, serial: u32) -> Card {
        Card::start_on(state, serial, 0)
    }

    /// Starts a card on vpcd reader `n` (port 35963 + n, reader "Virtual PCD 00 0n").
    ///
    /// vpcd takes a moment to notice that a previous card on the same port went away; a card
    /// that connects before then is not seen. So a card that does not show up within a few
    /// seconds is restarted, up to a minute in all.
    fn start_on(state: &Path, serial: u32, n: u16) -> Card {
        Card::start_with(state, serial, n, &[])
    }

    /// Like [`Card::start_on`], with extra arguments for the card (`--remove-when-signing`).
    fn start_with(state: &Path, serial: u32, n: u16, extra: &[&str]) -> Card {
        let reader = format!("{READER} 00 0{n}");
        let spawn = || {
            Command::new(bin("virtual-piv"))
                .args([
                    "--serial",
                    &serial.to_string(),
                    "--port",
                    &(35963 + n).to_string(),
                    "--state",
                ])
                .arg(state)
                .args(extra)
                .spawn()
                .expect("start the virtual card")
        };
        let mut card = Card {
            child: spawn(),
            reader: reader.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt_started = Instant::now();
        loop {
            let o = run(Command::new("yubico-piv-tool")
                .args(["-r", &reader, "-a", "version", "-a", "status"]));
            if stdout(&o).contains(&format!("Serial Number:\t{serial}")) {
                return card;
            }
            assert!(
                Instant::now() < deadline,
                "the virtual card {serial} did not appear in pcscd; is pcscd running with vsmartcard-vpcd? (scripts/test-hardware)\n{}{}",
                stdout(&o),
                stderr(&o)
            );
            if attempt_started.elapsed() > Duration::from_secs(6) {
                let _ = card.child.kill();
                let _ = card.child.wait();
                std::thread::sleep(Duration::from_secs(2));
                card.child = spawn();
                attempt_started = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Wait until pcscd has noticed the card is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let o =
                run(Command::new("yubico-piv-tool").args(["-r", &self.reader, "-a", "version"]));
            if !o.status.success() {
                // Give vpcd time to free the port for the next card.
                std::thread::sleep(Duration::from_secs(2));
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Table {
    tmp: tempfile::TempDir,
    pin: PathBuf,
    mgm: PathBuf,
}

impl Table {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pin = tmp.path().join("pin");
        let mgm = tmp.path().join("mgm");
        write_private(&pin, &format!("{PIN}\n"));
        write_private(&mgm, &format!("{FACTORY_MGM}\n"));
        Table { tmp, pin, mgm }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn signer(&self, args: &[&str], pin: &Path) -> Output {
        let mut cmd = Command::new(bin("kiwi-signer"));
        cmd.current_dir(self.tmp.path()).args(args);
        if matches!(args[0], "init" | "sign" | "revoke" | "crl") {
            // The test machine is connected: the air-gap preflight would refuse the card.
            cmd.arg("--pin-file").arg(pin).arg("--allow-network");
        }
        run(&mut cmd)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.signer(args, &self.pin);
        assert!(
            o.status.success(),
            "kiwi-signer {args:?}:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        format!("{}{}", stdout(&o), stderr(&o))
    }

    fn init(&self, ca: &str, serial: u32, slot: &str) -> String {
        let policy = workspace_root().join("policies/root.yaml");
        let serial = serial.to_string();
        self.ok(&[
            "init",
            "--ca",
            ca,
            "--backend",
            "yubikey",
            "--serial",
            &serial,
            "--slot",
            slot,
            "--mgm-key-file",
            path_str(&self.mgm),
            "--policy",
            path_str(&policy),
        ])
    }

    fn csr(&self, name: &str, curve: &str) -> String {
        ec_csr(self.tmp.path(), name, curve, &[])
    }
}

fn pin_tries() -> String {
    let o = run(Command::new("yubico-piv-tool").args(["-r", READER, "-a", "status"]));
    stdout(&o)
        .lines()
        .find(|l| l.starts_with("PIN tries left"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn rehearsal_and_failures_on_the_virtual_yubikey() {
    if std::env::var("KIWI_TEST_VPCD").as_deref() != Ok("1") {
        eprintln!("yubikey_virtual: not run here; scripts/test-hardware runs it with pcscd and the virtual card (KIWI_TEST_VPCD=1)");
        return;
    }
    let t = Table::new();
    let serial = 20_000_001u32;
    let card = Card::start(&t.p("card.json"), serial);

    // init: the key is generated in slot 9c, the root certificate written into the slot.
    let out = t.init("ca", serial, "9c");
    assert!(
        out.contains("factory management key"),
        "no warning about the default management key:\n{out}"
    );
    let toml = std::fs::read_to_string(t.p("ca/ca.toml")).expect("ca.toml");
    assert!(
        toml.contains(&format!("serial = {serial}")) && toml.contains("slot = \"9c\""),
        "{toml}"
    );
    assert!(
        !toml.contains("123456") && !toml.contains("0102030405060708"),
        "a secret in ca.toml:\n{toml}"
    );
    let status = stdout(&run(
        Command::new("yubico-piv-tool").args(["-r", READER, "-a", "status"])
    ));
    let slot9c = status
        .split("Slot 9c:")
        .nth(1)
        .expect("yubico-piv-tool shows slot 9c");
    assert!(
        slot9c.contains("Subject DN:\tO=KiwiStack, CN=KiwiStack Root CA R1"),
        "{status}"
    );
    assert!(slot9c.contains("ECCP384"), "{status}");

    // The anchor: init stored the genesis head; written, read back, and read by Yubico's tool.
    let with_key = Operator {
        mgm: Some(FACTORY_MGM),
    };
    let first = Anchor {
        head: Fingerprint::of(b"first head"),
        crl_number: 0,
    };
    let genesis = Anchor {
        head: kiwi_signer::ca::Ca::open(&t.p("ca"))
            .expect("open")
            .state()
            .head,
        crl_number: 0,
    };
    {
        let key = open_key(&t.p("ca"), &with_key);
        assert!(key.remembers());
        assert_eq!(key.read_anchor().expect("read"), Some(genesis.clone()));
        key.write_anchor(&first).expect("write the anchor");
        assert_eq!(key.read_anchor().expect("read"), Some(first.clone()));
    }
    assert_eq!(
        anchor_object(READER),
        format!("kiwi-pki anchor 1\nhead {}\ncrl 0\n", first.head.hex())
    );
    // Removed and inserted again: the device still remembers.
    card.stop();
    let card = Card::start(&t.p("card.json"), serial);
    {
        let key = open_key(&t.p("ca"), &with_key);
        assert_eq!(key.read_anchor().expect("read"), Some(first.clone()));
    }
    // Without a management key and without a PIN-protected one, the key is not even opened.
    {
        let ca = kiwi_signer::ca::Ca::open(&t.p("ca")).expect("open");
        let e = ca
            .config()
            .backend
            .open(&t.p("ca"), &Operator { mgm: None })
            .err()
            .expect("no management key: refused");
        assert!(e.to_string().contains("nobody here has"), "{e}");
    }
    // The runbook's setup: a PIN-protected management key. The PIN is then all it takes.
    protect_management_key(serial);
    let second = Anchor {
        head: Fingerprint::of(b"second head"),
        crl_number: 7,
    };
    {
        let key = open_key(&t.p("ca"), &Operator { mgm: None });
        assert_eq!(key.read_anchor().expect("read"), Some(first.clone()));
        key.write_anchor(&second)
            .expect("write with the PIN-protected key");
    }
    card.stop();
    let card = Card::start(&t.p("card.json"), serial);
    {
        let key = open_key(&t.p("ca"), &Operator { mgm: None });
        assert_eq!(key.read_anchor().expect("read"), Some(second));
        // Back to the ledger's real head, for the ceremonies below.
        key.write_anchor(&genesis).expect("restore the anchor");
    }

    // The rehearsal: two CSRs signed (touch announced), one revoked, the CRL re-issued.
    let a = t.csr("acme", "P-256");
    let g = t.csr("globex", "P-384");
    let signed = t.ok(&[
        "sign", "--ca", "ca", "--csr", &a, "--slug", "acme", "--tier", "core", "--out", "acme.crt",
        "--yes",
    ]);
    assert!(signed.contains("Touch the YubiKey"), "{signed}");
    t.ok(&[
        "sign",
        "--ca",
        "ca",
        "--csr",
        &g,
        "--slug",
        "globex",
        "--tier",
        "mesh",
        "--out",
        "globex.crt",
        "--yes",
    ]);
    for c in ["acme.crt", "globex.crt"] {
        assert!(
            openssl_ok(t.tmp.path(), &["verify", "-CAfile", "ca/root.pem", c]).contains(": OK")
        );
    }
    let serial_hex = openssl_ok(
        t.tmp.path(),
        &["x509", "-in", "acme.crt", "-noout", "-serial"],
    );
    let serial_hex = serial_hex.trim().trim_start_matches("serial=");
    t.ok(&[
        "revoke",
        "--ca",
        "ca",
        "--serial",
        serial_hex,
        "--reason",
        "keyCompromise",
        "--out",
        "crl1.pem",
        "--yes",
    ]);

    // head -n -2 after the revocation: the device remembers the newer head, so the next sign,
    // revoke and crl refuse without any flag, write nothing and leave the ledger as it is.
    let ledger_path = t.p("ca/ledger.jsonl");
    let complete = std::fs::read(&ledger_path).expect("ledger");
    let text = String::from_utf8(complete.clone()).expect("text");
    let lines: Vec<&str> = text.lines().collect();
    let rolled_back = format!("{}\n", lines[..lines.len() - 2].join("\n")).into_bytes();
    std::fs::write(&ledger_path, &rolled_back).expect("roll back");
    t.ok(&["ledger", "verify", "--ca", "ca"]);
    let n = t.csr("newco", "P-256");
    let attempts: [(&[&str], &str); 3] = [
        (
            &[
                "sign", "--ca", "ca", "--csr", &n, "--slug", "newco", "--tier", "core", "--out",
                "out.pem", "--yes",
            ],
            "sign",
        ),
        (
            &[
                "revoke",
                "--ca",
                "ca",
                "--serial",
                serial_hex,
                "--reason",
                "superseded",
                "--out",
                "out.pem",
                "--yes",
            ],
            "revoke",
        ),
        (&["crl", "--ca", "ca", "--out", "out.pem"], "crl"),
    ];
    for (args, what) in attempts {
        let o = t.signer(args, &t.pin);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{what} was not refused: {}",
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "YubiKey {serial} slot 9c last signed for ledger head"
            )) && err.contains("the ledger was rolled back or replaced")
                && err
                    .contains("Restore the newest backup of the CA directory; nothing was signed"),
            "{what}: {err}"
        );
        assert!(!t.p("out.pem").exists(), "{what} wrote its output");
        assert_eq!(std::fs::read(&ledger_path).expect("ledger"), rolled_back);
    }
    std::fs::write(&ledger_path, &complete).expect("restore the newest ledger");

    t.ok(&["crl", "--ca", "ca", "--out", "crl2.pem"]);
    t.ok(&["ledger", "verify", "--ca", "ca"]);

    // A ceremony file on the device: the CRL step signs, the device's anchor is the head the
    // step left (the ceremony_closed entry after it records no signature).
    std::fs::write(
        t.p("crl-reissue.yaml"),
        format!(
            "kind: crl-reissue\noperator: Ana\nwitnesses: [Ben]\ndevice: {{backend: yubikey, serial: {serial}}}\ncrl: {{out: crl3.pem}}\n"
        ),
    )
    .expect("ceremony file");
    t.ok(&[
        "ceremony",
        "run",
        "crl-reissue.yaml",
        "--ca",
        "ca",
        "--transcript",
        "t1",
        "--pin-file",
        path_str(&t.pin),
        "--mgm-key-file",
        path_str(&t.mgm),
        "--yes",
        "--allow-network",
    ]);
    let transcript: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.p("t1/transcript.json")).expect("transcript"))
            .expect("json");
    assert_eq!(transcript["device"], serial.to_string());
    let step_head = transcript["steps"][0]["head"].as_str().expect("head");
    assert!(anchor_object(READER).contains(step_head), "{transcript}");
    t.ok(&["ledger", "verify", "--ca", "ca"]);
    let revoked = openssl(
        t.tmp.path(),
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca/root.pem",
            "-CRLfile",
            "crl2.pem",
            "acme.crt",
        ],
    );
    assert!(!revoked.status.success());

    let ledger = || std::fs::read(t.p("ca/ledger.jsonl")).expect("ledger");
    let before = ledger();
    let refused = |pin: &Path, needles: &[&str]| {
        let o = t.signer(&["crl", "--ca", "ca", "--out", "refused.pem"], pin);
        assert!(!o.status.success(), "not refused");
        for n in needles {
            assert!(stderr(&o).contains(n), "no `{n}` in:\n{}", stderr(&o));
        }
        assert!(!t.p("refused.pem").exists(), "output written");
        assert_eq!(before, ledger(), "ledger changed");
    };
    let bad_pin = t.p("bad-pin");
    write_private(&bad_pin, "999999\n");

    // The card pulled out at the moment of signing: PIN accepted, key checked, then the device
    // vanishes instead of answering the signature request.
    card.stop();
    let mut vanishing = Card::start_with(&t.p("card.json"), serial, 0, &["--remove-when-signing"]);
    refused(
        &t.pin,
        &["failed to sign", "device removed", "run the command again"],
    );
    assert!(
        vanishing.child.try_wait().expect("card status").is_some(),
        "the card was never asked to sign"
    );
    vanishing.stop();
    let card = Card::start(&t.p("card.json"), serial);

    // Wrong PIN: the retries left are reported.
    refused(&bad_pin, &["wrong PIN", "2 tries left"]);

    // Wrong device serial.
    let original = std::fs::read_to_string(t.p("ca/ca.toml")).expect("toml");
    std::fs::write(
        t.p("ca/ca.toml"),
        original.replace(&serial.to_string(), "99999999"),
    )
    .expect("toml");
    refused(
        &t.pin,
        &[
            "no YubiKey with serial 99999999",
            &format!("found: {serial}"),
        ],
    );

    // A slot whose key is not root.pem's: another CA's key in slot 82 of the same device.
    t.init("ca2", serial, "82");
    std::fs::write(
        t.p("ca/ca.toml"),
        original.replace("slot = \"9c\"", "slot = \"82\""),
    )
    .expect("toml");
    refused(&t.pin, &["is not the key of root.pem"]);
    std::fs::write(t.p("ca/ca.toml"), &original).expect("toml");

    // One try left: the signer stops; --yes does not spend the last try.
    refused(&bad_pin, &["2 tries left"]);
    refused(&bad_pin, &["1 tries left"]);
    refused(&t.pin, &["one PIN try left"]);
    assert_eq!(pin_tries(), "PIN tries left:\t1", "the last try was spent");

    // Blocked: the message names the PUK.
    let _ = run(Command::new("yubico-piv-tool").args([
        "-r",
        READER,
        "-a",
        "verify-pin",
        "-P",
        "000000",
    ]));
    refused(&t.pin, &["blocked", "PUK"]);

    // The card removed mid-ceremony (its process stopped).
    card.stop();
    refused(&t.pin, &["no YubiKey with serial"]);

    // Backups: the key generated in memory and imported into two devices, which then hold the
    // same key and certificate; with the primary gone, the backup signs.
    let (a, b) = (30_000_001u32, 30_000_002u32);
    let primary = Card::start_on(&t.p("a.json"), a, 0);
    let backup = Card::start_on(&t.p("b.json"), b, 1);
    let policy = workspace_root().join("policies/root.yaml");
    t.ok(&[
        "init",
        "--ca",
        "ca3",
        "--backend",
        "yubikey",
        "--import-to",
        &a.to_string(),
        &b.to_string(),
        "--mgm-key-file",
        path_str(&t.mgm),
        "--policy",
        path_str(&policy),
    ]);
    let fingerprint = |reader: &str| {
        let o = run(Command::new("yubico-piv-tool").args(["-r", reader, "-a", "status"]));
        stdout(&o)
            .lines()
            .find(|l| l.contains("Fingerprint"))
            .map(str::to_string)
            .expect("a certificate in the slot")
    };
    assert_eq!(
        fingerprint("Virtual PCD 00 00"),
        fingerprint("Virtual PCD 00 01")
    );
    let toml = std::fs::read_to_string(t.p("ca3/ca.toml")).expect("toml");
    assert!(toml.contains(&format!("backups = [{b}]")), "{toml}");
    primary.stop();
    let c = t.csr("initech", "P-256");
    let sign_ca3 = [
        "sign",
        "--ca",
        "ca3",
        "--csr",
        &c,
        "--slug",
        "initech",
        "--tier",
        "core",
        "--out",
        "initech.crt",
        "--yes",
    ];
    // No PIN-protected management key on these devices and none given: refused before
    // anything is signed, saying how to give it.
    let ledger3 = std::fs::read(t.p("ca3/ledger.jsonl")).expect("ledger");
    let o = t.signer(&sign_ca3, &t.pin);
    assert!(!o.status.success(), "signed without a management key");
    assert!(stderr(&o).contains("--mgm-key-file"), "{}", stderr(&o));
    assert!(!t.p("initech.crt").exists());
    assert_eq!(
        ledger3,
        std::fs::read(t.p("ca3/ledger.jsonl")).expect("ledger")
    );
    let mut with_mgm = sign_ca3.to_vec();
    with_mgm.extend(["--mgm-key-file", path_str(&t.mgm)]);
    let out = t.ok(&with_mgm);
    assert!(out.contains(&format!("using backup YubiKey {b}")), "{out}");
    assert!(openssl_ok(
        t.tmp.path(),
        &["verify", "-CAfile", "ca3/root.pem", "initech.crt"]
    )
    .contains(": OK"));
    backup.stop();
}
