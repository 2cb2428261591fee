//! The signer's certificates and CRLs, checked with tools we did not write: `openssl verify`
//! (chain, name constraints, CRL revocation), Python `cryptography` (signatures and its
//! name-constraint-aware path validation) and DigiCert's `pkilint` (RFC 5280 lints).

use std::path::Path;
use std::process::Command;

use kiwi_e2e::{check_pki, openssl, openssl_ok, path_str, pkilint, run_ok, stdout, Fixture};

#[test]
fn issued_chain_and_crls_pass_openssl_cryptography_and_pkilint() {
    let f = Fixture::new();
    f.assert_ledger_ok();
    let root = f.root_pem();
    let root_s = path_str(&root);

    // A CSR that asks for far more than policy allows: CA pathlen 5, a SAN, digitalSignature.
    let csr1 = f.csr(
        "acme",
        "P-256",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:5",
            "-addext",
            "subjectAltName=DNS:evil.example.com",
            "-addext",
            "keyUsage=critical,digitalSignature,keyCertSign",
        ],
    );
    let acme = f.sign(&csr1, "acme", "core", "acme.pem");
    f.assert_ledger_ok();
    let csr2 = f.csr("globex", "P-384", &[]);
    let globex = f.sign(&csr2, "globex", "mesh", "globex.pem");
    f.assert_ledger_ok();

    // Policy extensions only, never the CSR's.
    let text = openssl_ok(&f.work, &["x509", "-in", "acme.pem", "-noout", "-text"]);
    for want in [
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "Permitted:",
        "DNS:acme.od.kiwistack.io",
        "OU = acme, CN = acme",
        "Public-Key: (256 bit)",
        "http://crl.kiwistack.io/root-r1.crl",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    for unwanted in [
        "evil.example.com",
        "pathlen:5",
        "Digital Signature",
        "csr subject",
    ] {
        assert!(
            !text.contains(unwanted),
            "CSR content `{unwanted}` leaked into:\n{text}"
        );
    }
    let text2 = openssl_ok(&f.work, &["x509", "-in", "globex.pem", "-noout", "-text"]);
    assert!(text2.contains("Public-Key: (384 bit)"), "{text2}");
    assert!(text2.contains("DNS:globex.od.kiwistack.io"), "{text2}");
    assert_ne!(f.serial_of(&acme), f.serial_of(&globex));

    // openssl: chain, and the name constraint both ways.
    for cert in [&acme, &globex] {
        let out = openssl_ok(&f.work, &["verify", "-CAfile", root_s, path_str(cert)]);
        assert!(out.contains(": OK"), "{out}");
    }
    let good = f.leaf("leaf-good", &acme, "acme.key", "x.acme.od.kiwistack.io");
    let bad = f.leaf("leaf-bad", &acme, "acme.key", "www.example.com");
    let chain = |leaf: &str| {
        openssl(
            &f.work,
            &["verify", "-CAfile", root_s, "-untrusted", "acme.pem", leaf],
        )
    };
    let ok = chain(&good);
    assert!(ok.status.success(), "{}", kiwi_e2e::stderr(&ok));
    let refused = chain(&bad);
    assert!(
        !refused.status.success(),
        "a leaf outside the name constraint verified"
    );
    let why = format!("{}{}", stdout(&refused), kiwi_e2e::stderr(&refused));
    assert!(why.contains("permitted subtree violation"), "{why}");

    // Python cryptography: signatures and path validation with name constraints.
    let acme_s = path_str(&acme);
    let (ok, out) = check_pki(&["issued", root_s, acme_s]);
    assert!(ok, "{out}");
    let (ok, out) = check_pki(&["issued", root_s, path_str(&globex)]);
    assert!(ok, "{out}");
    let good_p = f.w(&good);
    let (ok, out) = check_pki(&[
        "chain",
        root_s,
        acme_s,
        path_str(&good_p),
        "x.acme.od.kiwistack.io",
    ]);
    assert!(ok, "cryptography refused a valid chain: {out}");
    let bad_p = f.w(&bad);
    let (ok, out) = check_pki(&["chain", root_s, acme_s, path_str(&bad_p), "www.example.com"]);
    assert!(
        !ok,
        "cryptography accepted a leaf outside the name constraint: {out}"
    );
    assert!(
        out.to_lowercase().contains("name constraint") || out.contains("subtree"),
        "{out}"
    );

    // pkilint: no ERROR or WARNING on anything we made.
    for cert in [&root, &acme, &globex] {
        let findings = pkilint(cert, false);
        assert!(
            findings.is_empty(),
            "pkilint on {}:\n{findings}",
            cert.display()
        );
    }

    // Revoke acme: the CRL names it, openssl refuses it with -crl_check, globex still passes.
    let serial = f.serial_of(&acme);
    let crl1 = f.revoke(&serial, "keyCompromise", "crl1.pem");
    f.assert_ledger_ok();
    let with_crl = |crl: &Path, cert: &Path| {
        openssl(
            &f.work,
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                root_s,
                "-CRLfile",
                path_str(crl),
                path_str(cert),
            ],
        )
    };
    let revoked = with_crl(&crl1, &acme);
    assert!(!revoked.status.success());
    let why = format!("{}{}", stdout(&revoked), kiwi_e2e::stderr(&revoked));
    assert!(why.contains("certificate revoked"), "{why}");
    assert!(with_crl(&crl1, &globex).status.success());

    // Re-issue: CRL number 2, the revocation is still there.
    let crl2 = f.w("crl2.pem");
    f.signer_ok(&["crl", "--out", path_str(&crl2)]);
    f.assert_ledger_ok();
    let crl_text = openssl_ok(&f.work, &["crl", "-in", "crl2.pem", "-noout", "-text"]);
    assert!(
        crl_text.contains("X509v3 CRL Number: \n                2"),
        "{crl_text}"
    );
    assert!(crl_text.contains("Key Compromise"), "{crl_text}");
    assert!(!with_crl(&crl2, &acme).status.success());
    for crl in [&crl1, &crl2] {
        let findings = pkilint(crl, true);
        assert!(
            findings.is_empty(),
            "pkilint on {}:\n{findings}",
            crl.display()
        );
        let (ok, out) = check_pki(&["crl", root_s, path_str(crl)]);
        assert!(ok, "{out}");
        let listed: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(listed, vec![serial.trim_start_matches('0')], "{out}");
    }

    // status --json agrees.
    let status: serde_json::Value =
        serde_json::from_str(&f.signer_ok(&["status", "--json"])).expect("status is JSON");
    let inters = status["intermediates"]
        .as_array()
        .expect("intermediates list");
    assert_eq!(inters.len(), 2, "{status}");
    let revoked: Vec<_> = inters.iter().filter(|i| !i["revoked"].is_null()).collect();
    assert_eq!(revoked.len(), 1, "{status}");
    assert_eq!(revoked[0]["slug"], "acme", "{status}");
    assert_eq!(status["crl_number"], 2, "{status}");
}

#[test]
fn a_63_character_slug_yields_pkilint_clean_intermediates() {
    let f = Fixture::new();
    let slug = format!("long-customer-name-{}", "x".repeat(63 - 19));
    assert_eq!(slug.len(), 63);
    for tier in ["core", "mesh", "fleet"] {
        let csr = f.csr(&format!("long-{tier}"), "P-256", &[]);
        let cert = f.sign(&csr, &slug, tier, &format!("long-{tier}.pem"));
        let findings = pkilint(&cert, false);
        assert!(
            findings.is_empty(),
            "pkilint on the {tier} intermediate:\n{findings}"
        );
        let subject = openssl_ok(
            &f.work,
            &[
                "x509",
                "-in",
                path_str(&cert),
                "-noout",
                "-subject",
                "-nameopt",
                "sep_multiline",
            ],
        );
        assert!(subject.contains(&format!("CN={slug}")), "{subject}");
        let text = openssl_ok(
            &f.work,
            &["x509", "-in", path_str(&cert), "-noout", "-text"],
        );
        assert!(
            text.contains(&format!("DNS:{slug}.od.kiwistack.io")),
            "{text}"
        );
    }
    f.assert_ledger_ok();
}

#[test]
fn the_same_csr_signed_twice_gets_distinct_positive_serials() {
    let f = Fixture::new();
    let csr = f.csr("acme", "P-256", &["-outform", "DER"]);
    let a = f.sign(&csr, "acme", "fleet", "a.der");
    let b = f.sign(&csr, "acme", "fleet", "b.der");
    let (sa, sb) = (f.serial_of(&a), f.serial_of(&b));
    assert_ne!(sa, sb);
    for s in [&sa, &sb] {
        // openssl prints a positive serial; 128 random bits fit in at most 17 DER bytes.
        assert!(s.len() <= 34 && s.len() >= 16, "serial {s}");
    }
    let out = run_ok(
        Command::new("openssl")
            .current_dir(&f.work)
            .args(["verify", "-CAfile", path_str(&f.root_pem())])
            .arg(pem_of_der(&f, &a)),
    );
    assert!(out.contains(": OK"), "{out}");
    f.assert_ledger_ok();
}

fn pem_of_der(f: &Fixture, der: &Path) -> String {
    let out = format!("{}.pem", der.display());
    openssl_ok(
        &f.work,
        &["x509", "-inform", "DER", "-in", path_str(der), "-out", &out],
    );
    out
}
