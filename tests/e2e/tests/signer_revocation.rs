//! Compromise is forever, as openssl reads our CRLs: a superseded or cessationOfOperation
//! revocation can later become keyCompromise (the next CRL carries the new reason, the ledger
//! records the change), a compromised key (keyCompromise or cACompromise) is never certified
//! again, and no other reason ever changes.

use kiwi_e2e::{openssl_ok, path_str, stderr, Fixture};

/// The reason openssl prints for `serial` (lowercase hex) in the CRL at `crl`.
fn reason_in_crl(f: &Fixture, crl: &std::path::Path, serial: &str) -> String {
    let text = openssl_ok(&f.work, &["crl", "-in", path_str(crl), "-noout", "-text"]);
    let wanted = serial.to_ascii_uppercase();
    let mut lines = text.lines().skip_while(|l| {
        !l.trim()
            .strip_prefix("Serial Number: ")
            .is_some_and(|s| s.eq_ignore_ascii_case(&wanted))
    });
    assert!(lines.next().is_some(), "{serial} not in the CRL:\n{text}");
    let mut rest = lines.take_while(|l| !l.contains("Serial Number:"));
    rest.find(|l| l.contains("X509v3 CRL Reason Code"))
        .and_then(|_| rest.next())
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no reason for {serial}:\n{text}"))
}

#[test]
fn a_retired_certificate_can_become_a_compromise_and_a_compromise_is_final() {
    let f = Fixture::new();
    for (n, old, old_text) in [
        (0, "superseded", "Superseded"),
        (1, "cessationOfOperation", "Cessation Of Operation"),
    ] {
        let csr = f.csr(&format!("k{n}"), "P-256", &[]);
        let cert = f.sign(&csr, "acme", "core", &format!("a{n}.crt"));
        let serial = f.serial_of(&cert);
        let crl = f.revoke(&serial, old, &format!("old{n}.crl"));
        assert_eq!(reason_in_crl(&f, &crl, &serial), old_text);
        // A retired key is not a compromised one: it may be certified again.
        f.sign(&csr, "acme", "core", &format!("b{n}.crt"));
        // Only keyCompromise may replace the reason.
        for other in ["affiliationChanged", "cACompromise", old] {
            let before = f.ledger_bytes();
            let o = f.signer(&[
                "revoke",
                "--serial",
                &serial,
                "--reason",
                other,
                "--out",
                path_str(&f.w("no.crl")),
                "--yes",
            ]);
            assert!(!o.status.success(), "{old} became {other}");
            assert!(
                stderr(&o).contains("only to keyCompromise"),
                "{}",
                stderr(&o)
            );
            assert_eq!(before, f.ledger_bytes());
            assert!(!f.w("no.crl").exists());
        }
        let crl = f.revoke(&serial, "keyCompromise", &format!("kc{n}.crl"));
        assert_eq!(reason_in_crl(&f, &crl, &serial), "Key Compromise");
        let last_revoked = String::from_utf8(f.ledger_bytes())
            .expect("utf-8")
            .lines()
            .rev()
            .find(|l| l.contains("\"revoked\":{"))
            .expect("a revoked entry")
            .to_string();
        assert!(
            last_revoked.contains("\"reason\":\"keyCompromise\"")
                && last_revoked.contains(&format!("\"replaces\":\"{old}\"")),
            "{last_revoked}"
        );
        let status = f.signer_ok(&["status"]);
        assert!(status.contains("REVOKED keyCompromise"), "{status}");
        // Now final: never certified again, never revoked again.
        let o = f.sign_output(&csr, "acme", "core", &f.w(&format!("c{n}.crt")));
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("was revoked for keyCompromise"),
            "{}",
            stderr(&o)
        );
        let o = f.signer(&[
            "revoke",
            "--serial",
            &serial,
            "--reason",
            "keyCompromise",
            "--out",
            path_str(&f.w("no.crl")),
            "--yes",
        ]);
        assert!(!o.status.success());
    }
    // cACompromise blocks re-certifying the key exactly as keyCompromise does.
    let csr = f.csr("ca-compromised", "P-256", &[]);
    let cert = f.sign(&csr, "globex", "core", "g.crt");
    let serial = f.serial_of(&cert);
    let crl = f.revoke(&serial, "cACompromise", "ca.crl");
    assert_eq!(reason_in_crl(&f, &crl, &serial), "CA Compromise");
    let o = f.sign_output(&csr, "globex", "core", &f.w("g2.crt"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("was revoked for cACompromise"),
        "{}",
        stderr(&o)
    );
    assert!(!f.w("g2.crt").exists());
    f.assert_ledger_ok();
}
