//! After a churn hand-over the customer replaces the intermediate KiwiStack could read: their
//! own root (`init --org`) re-roots it, `renew` issues a replacement for a new key (made with
//! openssl) and `revoke` lists the re-rooted one on the customer's CRL. openssl verifies the new
//! certificate under the customer's root and the old one as revoked; pkilint finds nothing; the
//! subject and nameConstraints bytes are the re-rooted certificate's and the key is not; a leaf
//! of the new key verifies and one outside the name constraints does not. Refusals (the old
//! key, an unknown serial, the MSP root) leave the ledger as it was and write nothing.

use std::path::Path;

use kiwi_e2e::{
    ec_csr, openssl, openssl_leaf, openssl_ok, path_str, pkilint, stderr, stdout, Fixture,
};

const HOST: &str = "web.acme.od.kiwistack.io";

/// Subject, nameConstraints (critical, value) and SPKI DER of a PEM certificate.
fn parts(pem_path: &Path) -> (Vec<u8>, (bool, Vec<u8>), Vec<u8>) {
    let der = pem::parse(std::fs::read(pem_path).expect("read"))
        .expect("pem")
        .into_contents();
    let c = kiwi_signer::x509::parse_cert(&der).expect("certificate");
    let nc = c
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "2.5.29.30")
        .map(|e| (e.critical, e.value.to_vec()))
        .expect("nameConstraints");
    (
        c.subject().as_raw().to_vec(),
        nc,
        c.tbs_certificate.subject_pki.raw.to_vec(),
    )
}

/// `openssl verify ARGS -CAfile ROOT [-untrusted INTERMEDIATE] CERT` in `dir`: success and output.
fn verify(
    dir: &Path,
    args: &[&str],
    root: &Path,
    untrusted: Option<&Path>,
    cert: &Path,
) -> (bool, String) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.extend(["-CAfile", path_str(root)]);
    if let Some(u) = untrusted {
        all.extend(["-untrusted", path_str(u)]);
    }
    all.push(path_str(cert));
    let o = openssl(dir, &all);
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

/// The serial the newest ledger entry records under `event`.
fn last_serial(f: &Fixture, event: &str) -> String {
    let ledger = String::from_utf8(f.ledger_bytes()).expect("utf-8");
    let last: serde_json::Value =
        serde_json::from_str(ledger.lines().last().expect("entry")).expect("json");
    last["event"][event]["serial"]
        .as_str()
        .expect("serial")
        .to_string()
}

#[test]
fn the_customer_renews_a_rerooted_intermediate_with_a_new_key_and_revokes_the_old() {
    let msp = Fixture::new();
    let original = msp.sign(
        &msp.csr("int", "P-256", &[]),
        "acme",
        "mesh",
        "original.pem",
    );
    let msp_serial = msp.serial_of(&original);
    let msp_crl = msp.w("msp-1.crl");
    msp.signer_ok(&["crl", "--out", path_str(&msp_crl)]);

    let customer = Fixture::with_root(
        &kiwi_e2e::workspace_root().join("policies/customer-root.yaml"),
        &["--org", "Acme GmbH"],
    );
    let w = &customer.work;
    let customer_root = customer.root_pem();
    let rerooted = customer.w("rerooted.pem");
    customer.signer_ok(&[
        "reroot",
        "--cert",
        path_str(&original),
        "--msp-root",
        path_str(&msp.root_pem()),
        "--msp-crl",
        path_str(&msp_crl),
        "--permit-dns",
        "acme.example",
        "--out",
        path_str(&rerooted),
        "--yes",
    ]);
    let old_serial = last_serial(&customer, "rerooted");

    // The customer's new key and its CSR (as `kiwictl intermediate renew --new-key` would).
    let new_csr = customer.w(&ec_csr(w, "new", "P-384", &[]));
    // A CSR for the old key (the one KiwiStack could read).
    openssl_ok(
        w,
        &[
            "req",
            "-new",
            "-key",
            path_str(&msp.w("int.key")),
            "-subj",
            "/CN=old",
            "-out",
            "old.csr",
        ],
    );

    // Refusals: nothing written, ledgers unchanged.
    let refuse = |f: &Fixture, serial: &str, csr: &Path, expect: &str| {
        let before = f.ledger_bytes();
        let out = f.w("refused.pem");
        let o = f.signer(&[
            "renew",
            "--serial",
            serial,
            "--csr",
            path_str(csr),
            "--out",
            path_str(&out),
            "--yes",
        ]);
        assert!(!o.status.success(), "{expect}: {}", stdout(&o));
        assert!(stderr(&o).contains(expect), "{expect}: {}", stderr(&o));
        assert!(!out.exists(), "{expect}");
        assert_eq!(before, f.ledger_bytes(), "{expect}");
    };
    refuse(
        &customer,
        &old_serial,
        &customer.w("old.csr"),
        "a renewal certifies a NEW key",
    );
    refuse(
        &customer,
        "0badc0de",
        &new_csr,
        "neither re-rooted nor renewed it",
    );
    refuse(&msp, &msp_serial, &new_csr, "is a KiwiStack root");

    // The renewal, with a hook recording its event.
    let seen = customer.w("seen.json");
    let hooks = customer.w("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "hooks:\n  - name: record\n    event: intermediate_renewed\n    phase: post\n    \
             timeout_secs: 10\n    run: [sh, -c, 'cat > {}']\n",
            seen.display()
        ),
    )
    .expect("hooks");
    let renewed = customer.w("renewed.pem");
    let said = customer.signer_ok(&[
        "renew",
        "--serial",
        &old_serial,
        "--csr",
        path_str(&new_csr),
        "--out",
        path_str(&renewed),
        "--yes",
        "--hooks",
        path_str(&hooks),
    ]);
    assert!(said.contains("Intermediate renewed"), "{said}");
    let new_serial = last_serial(&customer, "renewed");
    customer.assert_ledger_ok();
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).expect("hook ran")).expect("json");
    assert_eq!(event["event"], "intermediate_renewed");
    assert_eq!(event["tool"], "kiwi-signer");
    assert_eq!(event["serial"], new_serial.as_str());
    assert_eq!(event["details"]["replaces"], old_serial.as_str());
    // `export` writes it again from the ledger.
    let exported = customer.w("exported.pem");
    customer.signer_ok(&[
        "export",
        "--serial",
        &new_serial,
        "--out",
        path_str(&exported),
    ]);
    assert_eq!(
        std::fs::read(&exported).expect("exported"),
        std::fs::read(&renewed).expect("renewed")
    );
    let (ok, said) = verify(w, &[], &customer_root, None, &renewed);
    assert!(ok, "{said}");
    assert_eq!(pkilint(&renewed, false), "", "renewed certificate");
    let (old_subject, old_nc, old_spki) = parts(&rerooted);
    let (new_subject, new_nc, new_spki) = parts(&renewed);
    assert_eq!(old_subject, new_subject, "subject DER");
    assert_eq!(old_nc, new_nc, "nameConstraints, critical, byte for byte");
    assert_ne!(old_spki, new_spki, "a new key");
    let text = openssl_ok(w, &["x509", "-in", path_str(&renewed), "-noout", "-text"]);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains(&kiwi_e2e::policy_oid("mesh")), "{text}");
    let status = customer.signer_ok(&["status"]);
    assert!(
        status.contains(&new_serial)
            && status.contains(&format!("renewed  (replaces {old_serial})")),
        "{status}"
    );

    // Leaves of the new key: inside the constraints they verify, outside they do not.
    let leaf = w.join(openssl_leaf(
        w,
        "leaf",
        &renewed,
        "new.key",
        &format!("/CN={HOST}"),
        &format!("DNS:{HOST}"),
    ));
    let (ok, said) = verify(w, &[], &customer_root, Some(&renewed), &leaf);
    assert!(ok, "{said}");
    let outside = w.join(openssl_leaf(
        w,
        "evil",
        &renewed,
        "new.key",
        "/CN=web.evil.example",
        "DNS:web.evil.example",
    ));
    let (ok, said) = verify(w, &[], &customer_root, Some(&renewed), &outside);
    assert!(
        !ok && said.contains("permitted subtree violation"),
        "{said}"
    );

    // Revoke the re-rooted certificate (superseded) with the customer's CRL.
    let crl = customer.revoke(&old_serial, "superseded", "customer-1.crl");
    assert_eq!(pkilint(&crl, true), "", "customer CRL");
    let crl_text = openssl_ok(w, &["crl", "-in", path_str(&crl), "-noout", "-text"]);
    assert!(crl_text.contains("Superseded"), "{crl_text}");
    let crl_check = ["-crl_check", "-CRLfile", path_str(&crl)];
    let (ok, said) = verify(w, &crl_check, &customer_root, None, &rerooted);
    assert!(!ok && said.contains("certificate revoked"), "{said}");
    let (ok, said) = verify(w, &crl_check, &customer_root, None, &renewed);
    assert!(ok, "{said}");
    customer.assert_ledger_ok();
    let status = customer.signer_ok(&["status"]);
    assert!(status.contains("REVOKED superseded"), "{status}");
    // A revoked certificate is not renewed again.
    let other_csr = customer.w(&ec_csr(w, "other", "P-256", &[]));
    refuse(
        &customer,
        &old_serial,
        &other_csr,
        "was revoked (superseded)",
    );
}
