//! Every request the signer must refuse, run through the real binary: each ends non-zero with
//! a message naming the problem, writes no output file, and leaves the ledger byte-identical
//! (and still verifying).

use std::path::{Path, PathBuf};

use kiwi_e2e::{openssl_ok, path_str, stderr, Fixture, PASSPHRASE};
use kiwi_signer::backend::soft::{self, SoftKey};
use kiwi_signer::backend::KeyBackend as _;
use kiwi_signer::backend::Secret;

/// Runs `sign` for `csr` and asserts the refusal: non-zero exit, `needle` in stderr (case
/// insensitive), no output, ledger unchanged.
fn assert_sign_refused(f: &Fixture, csr: &Path, slug: &str, tier: &str, needle: &str) {
    let out = f.w(&format!(
        "refused-{}.pem",
        f.work.read_dir().map(|d| d.count()).unwrap_or(0)
    ));
    let before = f.ledger_bytes();
    let o = f.sign_output(csr, slug, tier, &out);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "sign {csr:?} {slug} {tier} was not refused"
    );
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "refusal of {csr:?} {slug} {tier} does not mention `{needle}`:\n{err}"
    );
    assert!(
        !out.exists(),
        "{} was written despite the refusal",
        out.display()
    );
    assert_eq!(before, f.ledger_bytes(), "the ledger changed on a refusal");
    f.assert_ledger_ok();
}

fn write(f: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
    let p = f.w(name);
    std::fs::write(&p, bytes).expect("write test input");
    p
}

#[test]
fn bad_csrs_are_refused_and_nothing_changes() {
    let f = Fixture::new();
    let good = f.csr("good", "P-256", &["-outform", "DER"]);
    let der = std::fs::read(&good).expect("read csr");

    // Tampered: one byte of the signed subject changed, so proof of possession fails.
    let mut tampered = der.clone();
    let spot = der
        .windows(11)
        .position(|w| w == b"csr subject")
        .expect("the CSR carries its subject");
    tampered[spot] = b'x';
    let tampered = write(&f, "tampered.der", &tampered);
    assert_sign_refused(&f, &tampered, "acme", "core", "signature");

    // Tampered signature bytes at the very end.
    let mut sig = der.clone();
    let last = sig.len() - 1;
    sig[last] ^= 0x55;
    let sig = write(&f, "badsig.der", &sig);
    assert_sign_refused(&f, &sig, "acme", "core", "csr");

    // Truncated DER and truncated PEM.
    let trunc = write(&f, "trunc.der", &der[..der.len() - 10]);
    assert_sign_refused(&f, &trunc, "acme", "core", "csr");
    let pem_csr = f.csr("pem", "P-256", &[]);
    let pem_text = std::fs::read_to_string(&pem_csr).expect("read pem");
    let half = write(&f, "half.pem", &pem_text.as_bytes()[..pem_text.len() / 2]);
    assert_sign_refused(&f, &half, "acme", "core", "csr");
    let garbage = write(&f, "garbage.csr", b"this is not a certificate request\n");
    assert_sign_refused(&f, &garbage, "acme", "core", "csr");
    let empty = write(&f, "empty.csr", b"");
    assert_sign_refused(&f, &empty, "acme", "core", "csr");

    // RSA-1024 (and RSA at all: the policies allow ECDSA only).
    openssl_ok(
        &f.work,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "rsa.key",
        ],
    );
    openssl_ok(
        &f.work,
        &[
            "req", "-new", "-key", "rsa.key", "-subj", "/CN=rsa", "-out", "rsa.csr",
        ],
    );
    assert_sign_refused(&f, &f.w("rsa.csr"), "acme", "core", "RSA");

    // A curve outside every policy.
    let k1 = f.csr("secp256k1", "secp256k1", &[]);
    assert_sign_refused(&f, &k1, "acme", "core", "curve");

    // A missing file.
    assert_sign_refused(&f, &f.w("nope.csr"), "acme", "core", "nope.csr");
}

#[test]
fn bad_slugs_tiers_and_options_are_refused() {
    let f = Fixture::new();
    let csr = f.csr("acme", "P-384", &[]);
    let long = "a".repeat(64);
    for slug in [
        "-acme",
        "acme-",
        "Acme",
        "a_b",
        "a.b",
        "",
        long.as_str(),
        "ac me",
    ] {
        assert_sign_refused(&f, &csr, slug, "core", "slug");
    }
    // Names that would display as others, or use DNS's reserved label forms.
    assert_sign_refused(&f, &csr, "xn--80ak6aa92e", "core", "IDNA (punycode) label");
    assert_sign_refused(&f, &csr, "ab--cd", "core", "`--` in positions 3 and 4");
    for tier in ["gold", "CORE", ""] {
        assert_sign_refused(&f, &csr, "acme", tier, "tier");
    }
    // P-384 is allowed on mesh but the core policy's algorithms decide for core; a validity
    // beyond the tier's maximum is refused with the limit named.
    let before = f.ledger_bytes();
    let out = f.w("long.pem");
    let o = f.signer(&[
        "sign",
        "--csr",
        path_str(&csr),
        "--slug",
        "acme",
        "--tier",
        "mesh",
        "--out",
        path_str(&out),
        "--days",
        "9999",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "kiwi-signer: error: --days 9999 is outside the mesh policy (1 to 1826 days)\n"
    );
    assert!(!out.exists());
    assert_eq!(before, f.ledger_bytes());

    // An existing output is never overwritten, and is left as it was.
    let existing = write(&f, "existing.pem", b"keep me\n");
    let o = f.signer(&[
        "sign",
        "--csr",
        path_str(&csr),
        "--slug",
        "acme",
        "--tier",
        "mesh",
        "--out",
        path_str(&existing),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "kiwi-signer: error: --out {}: it exists already, and the signer never overwrites a \
             file: choose another --out path or move the old file away; nothing was signed\n",
            existing.display()
        )
    );
    assert_eq!(std::fs::read(&existing).expect("read"), b"keep me\n");
    assert_eq!(before, f.ledger_bytes());

    // Without --yes and with no terminal, nothing is signed.
    let out = f.w("unconfirmed.pem");
    let o = f.signer(&[
        "sign",
        "--csr",
        path_str(&csr),
        "--slug",
        "acme",
        "--tier",
        "mesh",
        "--out",
        path_str(&out),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(before, f.ledger_bytes());

    // A wrong passphrase.
    let wrong = f.w("wrong-pin");
    kiwi_e2e::write_private(&wrong, "not the passphrase at all\n");
    let o = std::process::Command::new(kiwi_e2e::bin("kiwi-signer"))
        .args([
            "sign",
            "--ca",
            path_str(&f.ca),
            "--csr",
            path_str(&csr),
            "--slug",
            "acme",
        ])
        .args([
            "--tier",
            "mesh",
            "--out",
            path_str(&out),
            "--yes",
            "--pin-file",
        ])
        .arg(&wrong)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run signer");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("passphrase"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(before, f.ledger_bytes());
}

/// rcgen signing through the root's software key, to forge a CSR carrying the root's key.
struct RootAsCsrKey(SoftKey);

impl rcgen::PublicKeyData for RootAsCsrKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key().point()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm().rcgen_alg()
    }
}

impl rcgen::SigningKey for RootAsCsrKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

#[test]
fn a_csr_with_the_roots_own_key_is_refused() {
    let f = Fixture::new();
    let root_key = SoftKey::open(&soft::key_path(&f.ca), &Secret::new(PASSPHRASE.to_string()))
        .expect("open the rehearsal root key");
    let key = RootAsCsrKey(root_key);
    let params = rcgen::CertificateParams::new(vec![]).expect("params");
    let csr = params
        .serialize_request(&key)
        .expect("CSR signed by the root key");
    let path = write(&f, "root-key.csr", csr.pem().expect("pem").as_bytes());
    // The CSR itself is well-formed: openssl accepts its proof of possession.
    openssl_ok(
        &f.work,
        &["req", "-in", "root-key.csr", "-noout", "-verify"],
    );
    for tier in ["core", "mesh"] {
        assert_sign_refused(&f, &path, "acme", tier, "root's own");
    }
}

#[test]
fn a_pin_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new();
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&f.pin, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let before = f.ledger_bytes();
        let crl = f.w(&format!("crl-{mode:o}.pem"));
        let o = f.signer(&["crl", "--out", path_str(&crl)]);
        let err = stderr(&o);
        assert!(!o.status.success(), "mode {mode:o} was accepted");
        assert!(
            err.contains(&format!("has mode {mode:04o}"))
                && err.contains(&format!("chmod 600 {}", f.pin.display())),
            "{err}"
        );
        assert!(!crl.exists());
        assert_eq!(before, f.ledger_bytes(), "the ledger changed on a refusal");
    }
    std::fs::set_permissions(&f.pin, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let crl = f.w("crl.pem");
    let o = f.signer(&["crl", "--out", path_str(&crl)]);
    assert!(o.status.success(), "{}", stderr(&o));
}
