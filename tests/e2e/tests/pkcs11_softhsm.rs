//! The PKCS#11 backend against a real token: SoftHSM2 (Debian `softhsm2`), in a token directory
//! of the test's own. The same rehearsal as on the software backend (init, sign two CSRs,
//! revoke one, CRL, ledger verify, openssl verify), then the failures: wrong PIN, a key that
//! is not root.pem's, a missing token — each with a clear message, nothing written, the ledger
//! unchanged. This machine is connected, so every command that uses the key passes
//! `--allow-network`; without it the air-gap preflight refuses before the token is asked
//! for anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiwi_e2e::{
    bin, ec_csr, openssl, openssl_ok, path_str, run, run_ok, stderr, stdout, workspace_root,
};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "KiwiStack Root";
const PIN: &str = "314159";

struct Hsm {
    tmp: tempfile::TempDir,
    conf: PathBuf,
    pin: PathBuf,
}

impl Hsm {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} is missing; run scripts/install-test-deps (it installs softhsm2)"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let tokens = tmp.path().join("tokens");
        std::fs::create_dir(&tokens).expect("mkdir");
        let conf = tmp.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("conf");
        run_ok(
            Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    TOKEN,
                    "--pin",
                    PIN,
                    "--so-pin",
                    "27182818",
                ]),
        );
        let pin = tmp.path().join("pin");
        std::fs::write(&pin, format!("{PIN}\n")).expect("pin");
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Hsm { tmp, conf, pin }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Runs the signer; commands that use the key get `--pin-file PIN --allow-network`.
    fn signer(&self, args: &[&str], pin: &Path) -> Output {
        self.signer_with(args, pin, true)
    }

    fn signer_with(&self, args: &[&str], pin: &Path, allow_network: bool) -> Output {
        let mut cmd = Command::new(bin("kiwi-signer"));
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .current_dir(self.tmp.path())
            .args(args);
        if matches!(args[0], "init" | "sign" | "revoke" | "crl") {
            cmd.arg("--pin-file").arg(pin);
            if allow_network {
                cmd.arg("--allow-network");
            }
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
        stdout(&o)
    }

    fn init(&self, ca: &str, key_label: &str) {
        let policy = workspace_root().join("policies/root.yaml");
        self.ok(&[
            "init",
            "--ca",
            ca,
            "--backend",
            "pkcs11",
            "--module",
            MODULE,
            "--token-label",
            TOKEN,
            "--key-label",
            key_label,
            "--policy",
            path_str(&policy),
        ]);
    }

    fn csr(&self, name: &str, curve: &str) -> String {
        ec_csr(self.tmp.path(), name, curve, &[])
    }
}

#[test]
fn rehearsal_on_softhsm2_and_its_failures() {
    let h = Hsm::new();
    h.init("ca", "root-r1");
    let toml = std::fs::read_to_string(h.path("ca/ca.toml")).expect("ca.toml");
    assert!(
        toml.contains("[backend]\ntype = \"pkcs11\"") && toml.contains("key_label = \"root-r1\""),
        "{toml}"
    );
    assert!(!toml.contains(PIN), "the PIN was written to ca.toml");
    assert!(
        !h.path("ca/root.key.age").exists(),
        "a software key file next to a token key"
    );

    // The rehearsal: two CSRs signed, one revoked, the CRL re-issued, the ledger intact.
    let a = h.csr("acme", "P-256");
    let g = h.csr("globex", "P-384");
    h.ok(&[
        "sign", "--ca", "ca", "--csr", &a, "--slug", "acme", "--tier", "core", "--out", "acme.crt",
        "--yes",
    ]);
    h.ok(&[
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
        let out = openssl_ok(h.tmp.path(), &["verify", "-CAfile", "ca/root.pem", c]);
        assert!(out.contains(": OK"), "{out}");
    }
    let serial = openssl_ok(
        h.tmp.path(),
        &["x509", "-in", "acme.crt", "-noout", "-serial"],
    );
    let serial = serial.trim().trim_start_matches("serial=");
    h.ok(&[
        "revoke",
        "--ca",
        "ca",
        "--serial",
        serial,
        "--reason",
        "keyCompromise",
        "--out",
        "crl1.pem",
        "--yes",
    ]);
    h.ok(&["crl", "--ca", "ca", "--out", "crl2.pem"]);
    h.ok(&["ledger", "verify", "--ca", "ca"]);
    let revoked = openssl(
        h.tmp.path(),
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
    assert!(format!("{}{}", stdout(&revoked), stderr(&revoked)).contains("certificate revoked"));

    let ledger = || std::fs::read(h.path("ca/ledger.jsonl")).expect("ledger");
    let before = ledger();
    let refused = |args: &[&str], pin: &Path, needle: &str, out: &str| {
        let o = h.signer(args, pin);
        assert!(!o.status.success(), "{args:?} was not refused");
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: no `{needle}` in\n{}",
            stderr(&o)
        );
        assert!(!h.path(out).exists(), "{out} was written");
        assert_eq!(before, ledger(), "the ledger changed");
    };

    // Wrong PIN.
    let bad = h.path("bad-pin");
    kiwi_e2e::write_private(&bad, "000000\n");
    refused(
        &["crl", "--ca", "ca", "--out", "crl3.pem"],
        &bad,
        "wrong PIN",
        "crl3.pem",
    );

    // A key on the token that is not root.pem's: point ca.toml at another CA's key.
    h.init("ca2", "root-r2");
    let original = std::fs::read_to_string(h.path("ca/ca.toml")).expect("toml");
    std::fs::write(h.path("ca/ca.toml"), original.replace("root-r1", "root-r2")).expect("toml");
    refused(
        &["crl", "--ca", "ca", "--out", "crl3.pem"],
        &h.pin,
        "is not the key of root.pem",
        "crl3.pem",
    );

    // The token is not there (another label).
    std::fs::write(
        h.path("ca/ca.toml"),
        original.replace("KiwiStack Root", "Missing Token"),
    )
    .expect("toml");
    refused(
        &["crl", "--ca", "ca", "--out", "crl3.pem"],
        &h.pin,
        "no token labelled `Missing Token`",
        "crl3.pem",
    );

    // init refuses to reuse a key label, and leaves nothing behind.
    std::fs::write(h.path("ca/ca.toml"), &original).expect("toml");
    let policy = workspace_root().join("policies/root.yaml");
    let o = h.signer(
        &[
            "init",
            "--ca",
            "ca3",
            "--backend",
            "pkcs11",
            "--module",
            MODULE,
            "--token-label",
            TOKEN,
            "--key-label",
            "root-r1",
            "--policy",
            path_str(&policy),
        ],
        &h.pin,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already holds a key labelled `root-r1`"),
        "{}",
        stderr(&o)
    );
    assert!(!h.path("ca3").exists());
    // And the original CA still works.
    h.ok(&["crl", "--ca", "ca", "--out", "crl3.pem"]);
}

/// The PIN, for the library.
struct Pin;

impl kiwi_signer::callbacks::Callbacks for Pin {
    fn confirm(&self, _summary: &str) -> kiwi_signer::Result<bool> {
        Ok(true)
    }
    fn secret(&self, _prompt: &str) -> kiwi_signer::Result<kiwi_signer::backend::Secret> {
        Ok(kiwi_signer::backend::Secret::new(PIN.into()))
    }
    fn notice(&self, _message: &str) {}
}

/// Opens the root key of the CA in `dir` through the library (a fresh PKCS#11 session each
/// time: the module is loaded, initialized and finalized again).
fn open_key(dir: &Path) -> Box<dyn kiwi_signer::backend::KeyBackend + 'static> {
    let ca = kiwi_signer::ca::Ca::open(dir).expect("open the CA");
    match ca.config().backend.open(dir, &Pin) {
        Ok(k) => k,
        Err(e) => panic!("open the token key: {e}"),
    }
}

/// `pkcs11-tool --list-objects --type data`, logged in or not.
fn data_objects(h: &Hsm, login: bool) -> String {
    let mut cmd = Command::new("pkcs11-tool");
    cmd.env("SOFTHSM2_CONF", &h.conf).args([
        "--module",
        MODULE,
        "--token-label",
        TOKEN,
        "--list-objects",
        "--type",
        "data",
    ]);
    if login {
        cmd.args(["--login", "--pin", PIN]);
    }
    run_ok(&mut cmd)
}

#[test]
fn the_token_remembers_the_ledger_anchor_across_sessions() {
    use kiwi_signer::backend::Anchor;
    use kiwi_signer::words::Fingerprint;

    let h = Hsm::new();
    h.init("ca", "root-r1");
    // The library loads the module in this process: point it at the test's token directory.
    // No other test in this file reads the variable (they pass it to each child process).
    std::env::set_var("SOFTHSM2_CONF", &h.conf);
    let dir = h.path("ca");
    let first = Anchor {
        head: Fingerprint::of(b"first head"),
        crl_number: 0,
    };
    {
        // init stored the genesis head.
        let genesis = Anchor {
            head: kiwi_signer::ca::Ca::open(&dir).expect("open").state().head,
            crl_number: 0,
        };
        let key = open_key(&dir);
        assert!(key.remembers());
        assert_eq!(key.read_anchor().expect("read"), Some(genesis));
        key.write_anchor(&first).expect("write");
        assert_eq!(key.read_anchor().expect("read"), Some(first.clone()));
    }
    // Closed and opened again: still there. Then replaced, not added to.
    let second = Anchor {
        head: Fingerprint::of(b"second head"),
        crl_number: 3,
    };
    {
        let key = open_key(&dir);
        assert_eq!(key.read_anchor().expect("read"), Some(first));
        key.write_anchor(&second).expect("replace");
    }
    {
        let key = open_key(&dir);
        assert_eq!(key.read_anchor().expect("read"), Some(second.clone()));
    }
    // OpenSC's tool sees one private data object, labelled after the key, only when logged in.
    let listed = data_objects(&h, true);
    assert_eq!(listed.matches("root-r1.anchor.").count(), 1, "{listed}");
    assert!(
        listed.contains("root-r1.anchor.3"),
        "init's and two writes, the third generation:\n{listed}"
    );
    assert!(listed.contains("kiwi-pki"), "{listed}");
    assert!(listed.contains("private"), "{listed}");
    let public = data_objects(&h, false);
    assert!(
        !public.contains("root-r1.anchor"),
        "visible without the PIN:\n{public}"
    );

    // A crash between writing the next generation and removing the older one leaves both: the
    // higher generation is read, and the next write leaves only its own.
    let stale = h.path("stale-anchor");
    std::fs::write(
        &stale,
        Anchor {
            head: Fingerprint::of(b"stale head"),
            crl_number: 1,
        }
        .encode(),
    )
    .expect("write");
    run_ok(
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &h.conf)
            .args([
                "--module",
                MODULE,
                "--token-label",
                TOKEN,
                "--login",
                "--pin",
                PIN,
                "--write-object",
                path_str(&stale),
                "--type",
                "data",
                "--label",
                "root-r1.anchor.1",
                "--application-label",
                "kiwi-pki",
                "--private",
            ]),
    );
    assert_eq!(data_objects(&h, true).matches("root-r1.anchor.").count(), 2);
    let third = Anchor {
        head: Fingerprint::of(b"third head"),
        crl_number: 4,
    };
    {
        let key = open_key(&dir);
        assert_eq!(key.read_anchor().expect("read"), Some(second.clone()));
        key.write_anchor(&third).expect("write");
        assert_eq!(key.read_anchor().expect("read"), Some(third));
    }
    let listed = data_objects(&h, true);
    assert_eq!(listed.matches("root-r1.anchor.").count(), 1, "{listed}");
    assert!(listed.contains("root-r1.anchor.4"), "{listed}");

    // The soft backend has no device: it remembers nothing.
    let soft = h.path("soft");
    let policy = workspace_root().join("policies/root.yaml");
    let cb = kiwi_signer::callbacks::Scripted {
        confirm: true,
        secret: "a rehearsal passphrase".into(),
    };
    kiwi_signer::ceremony::init(
        &soft,
        &policy,
        &kiwi_signer::ceremony::init::BackendSpec::soft(),
        &kiwi_signer::ceremony::Ceremony::new(&cb, time::OffsetDateTime::now_utc()),
    )
    .expect("soft init");
    let ca = kiwi_signer::ca::Ca::open(&soft).expect("open");
    let key = match ca.config().backend.open(&soft, &cb) {
        Ok(k) => k,
        Err(e) => panic!("open the soft key: {e}"),
    };
    assert!(!key.remembers());
    key.write_anchor(&Anchor {
        head: Fingerprint::of(b"x"),
        crl_number: 1,
    })
    .expect("a no-op");
    assert_eq!(key.read_anchor().expect("read"), None);
}

/// The ledger without its last `n` lines (`head -n -N`).
fn cut(ledger: &[u8], n: usize) -> Vec<u8> {
    let text = String::from_utf8(ledger.to_vec()).expect("the ledger is text");
    let lines: Vec<&str> = text.lines().collect();
    let kept = &lines[..lines.len() - n];
    format!("{}\n", kept.join("\n")).into_bytes()
}

#[test]
fn a_ledger_rolled_back_past_a_revocation_is_refused_without_any_flag() {
    let h = Hsm::new();
    h.init("ca", "root-r1");
    let a = h.csr("acme", "P-256");
    h.ok(&[
        "sign", "--ca", "ca", "--csr", &a, "--slug", "acme", "--tier", "core", "--out", "acme.crt",
        "--yes",
    ]);
    let serial = openssl_ok(
        h.tmp.path(),
        &["x509", "-in", "acme.crt", "-noout", "-serial"],
    );
    let serial = serial.trim().trim_start_matches("serial=").to_string();
    h.ok(&[
        "revoke",
        "--ca",
        "ca",
        "--serial",
        &serial,
        "--reason",
        "keyCompromise",
        "--out",
        "crl1.pem",
        "--yes",
    ]);
    let ledger_path = h.path("ca/ledger.jsonl");
    let complete = std::fs::read(&ledger_path).expect("ledger");
    // head -n -2: the revocation and its CRL are gone; the ledger still verifies on its own.
    let rolled_back = cut(&complete, 2);
    std::fs::write(&ledger_path, &rolled_back).expect("roll back");
    h.ok(&["ledger", "verify", "--ca", "ca"]);

    let g = h.csr("globex", "P-256");
    let attempts: [(&[&str], &str); 3] = [
        (
            &[
                "sign", "--ca", "ca", "--csr", &g, "--slug", "globex", "--tier", "core", "--out",
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
                &serial,
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
        let o = h.signer(args, &h.pin);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{what} was not refused: {}",
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(
            err.contains(
                "PKCS#11 key `root-r1` on token `KiwiStack Root` last signed for ledger head"
            ) && err.contains("the ledger was rolled back or replaced")
                && err
                    .contains("Restore the newest backup of the CA directory; nothing was signed"),
            "{what}: {err}"
        );
        assert!(!h.path("out.pem").exists(), "{what} wrote its output");
        assert_eq!(
            std::fs::read(&ledger_path).expect("ledger"),
            rolled_back,
            "{what} changed the ledger"
        );
    }
    // The newest ledger back in place: the same command goes through.
    std::fs::write(&ledger_path, &complete).expect("restore");
    h.ok(&["crl", "--ca", "ca", "--out", "crl2.pem"]);
}

/// Each ledger entry's `preflight` record (JSON null when the machine looked offline).
fn preflight_records(ledger: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(ledger)
        .expect("ledger")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("entry")["preflight"].clone())
        .collect()
}

#[test]
fn a_token_root_on_a_connected_machine_needs_allow_network_and_the_ledger_says_so() {
    let h = Hsm::new();
    let preflight = run(Command::new(bin("kiwi-signer")).arg("preflight"));
    if preflight.status.success() {
        // An offline machine (an air-gapped CI runner): nothing is refused or recorded.
        h.init("ca", "root-r1");
        let records = preflight_records(&h.path("ca/ledger.jsonl"));
        assert!(records.iter().all(|r| r.is_null()), "{records:?}");
        println!("SKIPPED the connected-machine half: this machine passes the preflight");
        return;
    }
    // Refused before the PIN reaches the token: a wrong PIN is never reported as wrong.
    let policy = workspace_root().join("policies/root.yaml");
    let bad = h.path("bad-pin");
    kiwi_e2e::write_private(&bad, "000000\n");
    let init_args = [
        "init",
        "--ca",
        "ca",
        "--backend",
        "pkcs11",
        "--module",
        MODULE,
        "--token-label",
        TOKEN,
        "--key-label",
        "root-r1",
        "--policy",
        path_str(&policy),
    ];
    let o = h.signer_with(&init_args, &bad, false);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the air-gap preflight failed, so the root key was not used")
            && stderr(&o).contains("--allow-network")
            && !stderr(&o).contains("PIN"),
        "{}",
        stderr(&o)
    );
    assert!(!h.path("ca").exists(), "init left a CA behind");

    // With --allow-network: printed, and recorded in the entry.
    let o = h.signer_with(&init_args, &h.pin, true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("air-gap preflight failed")
            && stderr(&o).contains("--allow-network was given"),
        "{}",
        stderr(&o)
    );
    let ledger = h.path("ca/ledger.jsonl");
    let first = &preflight_records(&ledger)[0];
    assert_eq!(first["overridden"], "allow_network", "{first}");
    let failed = first["failed"].as_array().expect("failed checks");
    assert!(
        failed
            .iter()
            .any(|c| c["name"] == "network interfaces" && c["ok"] == false),
        "{first}"
    );

    // Later commands: refused the same way (the wrong PIN is never tried), then recorded.
    let before = std::fs::read(&ledger).expect("ledger");
    let o = h.signer_with(&["crl", "--ca", "ca", "--out", "crl1.pem"], &bad, false);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("air-gap preflight failed") && !stderr(&o).contains("wrong PIN"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        before,
        std::fs::read(&ledger).expect("ledger"),
        "the ledger changed"
    );
    assert!(!h.path("crl1.pem").exists());
    h.ok(&["crl", "--ca", "ca", "--out", "crl1.pem"]);
    let records = preflight_records(&ledger);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["overridden"], "allow_network", "{records:?}");
    h.ok(&["ledger", "verify", "--ca", "ca"]);
}

/// A ceremony file runs on the token as on the software key: root-init creates the CA on
/// SoftHSM2, a signing ceremony (one CSR, then the CRL) uses the key opened once, and the
/// transcript the witness signs with ssh-keygen verifies.
#[test]
fn ceremony_scripts_run_and_verify_on_softhsm2() {
    let h = Hsm::new();
    let t = h.tmp.path();
    std::fs::create_dir(t.join("policies")).expect("mkdir");
    for f in [
        "root.yaml",
        "intermediate-core.yaml",
        "intermediate-mesh.yaml",
        "intermediate-fleet.yaml",
    ] {
        std::fs::copy(
            workspace_root().join("policies").join(f),
            t.join("policies").join(f),
        )
        .expect("copy policy");
    }
    let head = format!(
        "operator: Ana\nwitnesses: [Ben]\ndevice: {{backend: pkcs11, token_label: {TOKEN}, key_label: root-c"
    );
    std::fs::write(
        t.join("root-init.yaml"),
        format!("kind: root-init\n{head}, module: {MODULE}}}\npolicy: policies/root.yaml\n"),
    )
    .expect("root-init file");
    let csr = h.csr("acme", "P-256");
    std::fs::write(
        t.join("signing.yaml"),
        format!(
            "kind: signing\n{head}}}\nsteps:\n  - sign: {{csr: {csr}, slug: acme, tier: core, out: acme.pem}}\ncrl: {{out: root.crl}}\n"
        ),
    )
    .expect("signing file");
    let pin = path_str(&h.pin);
    for (file, out) in [("root-init.yaml", "t0"), ("signing.yaml", "t1")] {
        let o = h.signer(
            &[
                "ceremony",
                "run",
                file,
                "--ca",
                "ca",
                "--transcript",
                out,
                "--pin-file",
                pin,
                "--yes",
                "--allow-network",
            ],
            &h.pin,
        );
        assert!(o.status.success(), "ceremony run {file}: {}", stderr(&o));
    }
    let json = std::fs::read_to_string(t.join("t1/transcript.json")).expect("transcript");
    assert!(
        json.contains(TOKEN),
        "the transcript names the token: {json}"
    );
    let public = kiwi_e2e::witness_key(t, "ben");
    std::fs::write(t.join("allowed"), format!("ben {public}")).expect("allowed signers");
    kiwi_e2e::witness_sign(t, "ben", &t.join("t1/transcript.json"));
    let out = h.ok(&[
        "ceremony",
        "verify",
        "t1",
        "--ca",
        "ca",
        "--allowed-signers",
        "allowed",
    ]);
    assert!(out.contains("Ceremony verified."), "{out}");
}
