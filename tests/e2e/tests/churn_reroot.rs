//! Churn hand-over, as openssl and pkilint see it: the MSP signs an intermediate for a customer
//! (its own key, made with openssl), the intermediate issues a leaf with openssl, the customer
//! creates a root of their own (`init --org`), re-roots the intermediate under it, and the MSP
//! hands it over (revoked as affiliationChanged). The old leaf then verifies under the
//! customer's root and not under the MSP's with the MSP CRL. Refusals leave the customer's
//! ledger as it was and write nothing: a keyCompromise-revoked certificate, one another root
//! issued, a CA:FALSE one.

use std::path::{Path, PathBuf};

use kiwi_e2e::{openssl, openssl_ok, path_str, pkilint, stderr, stdout, Fixture};

const HOST: &str = "web.acme.od.kiwistack.io";

/// SPKI, subject and SKI DER of a PEM certificate, as x509-parser reads them.
fn kept_bytes(pem_path: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let der = pem::parse(std::fs::read(pem_path).expect("read"))
        .expect("pem")
        .into_contents();
    let c = kiwi_signer::x509::parse_cert(&der).expect("certificate");
    let ski = c
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "2.5.29.14")
        .expect("SKI")
        .value
        .to_vec();
    let spki = c.tbs_certificate.subject_pki.raw.to_vec();
    (spki, c.subject().as_raw().to_vec(), ski)
}

/// The SHA-256 fingerprint of a PEM certificate as openssl prints it, lowercase hex.
fn fingerprint(dir: &Path, cert: &Path) -> String {
    let args = [
        "x509",
        "-in",
        path_str(cert),
        "-noout",
        "-fingerprint",
        "-sha256",
    ];
    let out = openssl_ok(dir, &args);
    let hex = out.trim().rsplit('=').next().expect("fingerprint");
    hex.replace(':', "").to_lowercase()
}

/// An (empty) CRL from `cert`/`key` with `openssl ca -gencrl`, written to `dir/out`.
fn openssl_crl(dir: &Path, key: &str, cert: &str, out: &str) -> PathBuf {
    if !dir.join("ca.cnf").exists() {
        std::fs::write(dir.join("index.txt"), "").expect("index");
        std::fs::write(dir.join("crlnumber"), "01\n").expect("crlnumber");
        let cnf = "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\ncrlnumber=crlnumber\n\
                   default_md=sha256\ndefault_crl_days=30\n";
        std::fs::write(dir.join("ca.cnf"), cnf).expect("ca.cnf");
    }
    let args = [
        "ca", "-gencrl", "-config", "ca.cnf", "-keyfile", key, "-cert", cert, "-out", out,
    ];
    openssl_ok(dir, &args);
    dir.join(out)
}

/// Hooks file recording each event's JSON into `dir/<event>.json`.
fn hooks(dir: &Path) -> PathBuf {
    let mut text = String::from("hooks:\n");
    for event in ["rerooted", "handed_over"] {
        let out = dir.join(format!("{event}.json"));
        text.push_str(&format!(
            "  - name: record-{event}\n    event: {event}\n    phase: post\n    \
             timeout_secs: 10\n    run: [sh, -c, 'cat > {}']\n",
            out.display()
        ));
    }
    let p = dir.join("hooks.yaml");
    std::fs::write(&p, text).expect("hooks");
    p
}

fn hook_json(dir: &Path, event: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("{event}.json"))).expect("hook ran");
    serde_json::from_str(&text).expect("hook JSON")
}

/// `openssl verify ARGS -CAfile ROOT -untrusted INTERMEDIATE leaf.pem`: success and output.
fn verify(dir: &Path, args: &[&str], root: &Path, intermediate: &Path) -> (bool, String) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.extend([
        "-CAfile",
        path_str(root),
        "-untrusted",
        path_str(intermediate),
    ]);
    all.push("leaf.pem");
    let o = openssl(dir, &all);
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

#[test]
fn a_rerooted_intermediate_keeps_its_leaves_and_the_msp_revokes_it() {
    let msp = Fixture::new();
    let w = &msp.work;
    let csr = msp.csr("int", "P-256", &[]);
    let original = msp.sign(&csr, "acme", "mesh", "original.pem");
    let serial = msp.serial_of(&original);
    // As the ledger writes it (no leading zero bytes).
    let ledger_serial = kiwi_signer::x509::Serial::parse_hex(&serial)
        .expect("hex")
        .hex();
    // A leaf issued by the intermediate's own key before the re-root.
    assert_eq!(msp.leaf("leaf", &original, "int.key", HOST), "leaf.pem");
    let msp_root = msp.root_pem();
    let (ok, said) = verify(w, &[], &msp_root, &original);
    assert!(ok, "{said}");
    let msp_crl = msp.w("msp-1.crl");
    msp.signer_ok(&["crl", "--out", path_str(&msp_crl)]);

    // The customer's own root: no KiwiStack name in it.
    let customer = Fixture::with_root(
        &kiwi_e2e::workspace_root().join("policies/customer-root.yaml"),
        &["--org", "Acme GmbH"],
    );
    let customer_root = customer.root_pem();
    let text = openssl_ok(
        w,
        &["x509", "-in", path_str(&customer_root), "-noout", "-text"],
    );
    assert!(
        text.contains("O = Acme GmbH, CN = Acme GmbH Root CA"),
        "{text}"
    );
    assert!(!text.to_lowercase().contains("kiwistack"), "{text}");
    assert_eq!(pkilint(&customer_root, false), "", "customer root");

    // Refusals: nothing written, the customer's ledger unchanged.
    let refuse = |cert: &Path, root: &Path, crl: &Path, expect: &str| {
        let before = customer.ledger_bytes();
        let out = customer.w("refused.pem");
        let (cert, root, crl) = (path_str(cert), path_str(root), path_str(crl));
        let args = [
            "reroot",
            "--cert",
            cert,
            "--msp-root",
            root,
            "--msp-crl",
            crl,
        ];
        let o = customer.signer(&[&args[..], &["--out", path_str(&out), "--yes"]].concat());
        assert!(!o.status.success(), "{expect}: {}", stdout(&o));
        assert!(stderr(&o).contains(expect), "{expect}: {}", stderr(&o));
        assert!(!out.exists(), "{expect}");
        assert_eq!(before, customer.ledger_bytes(), "{expect}");
    };
    // keyCompromise on the MSP CRL.
    let leaked = msp.sign(
        &msp.csr("leaked", "P-256", &[]),
        "acme",
        "mesh",
        "leaked.pem",
    );
    let kc_crl = msp.revoke(&msp.serial_of(&leaked), "keyCompromise", "kc.crl");
    refuse(&leaked, &msp_root, &kc_crl, "as revoked (keyCompromise)");
    // Another root (openssl's, with the MSP root's very name) issued it.
    let subj = "/O=KiwiStack/CN=KiwiStack Root CA R1";
    openssl_ok(
        w,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other.key",
            "-subj",
            subj,
            "-days",
            "30",
            "-out",
            "other-root.pem",
        ],
    );
    let ca_ext = "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,\
                  cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
    std::fs::write(w.join("ca.ext"), ca_ext).expect("ca.ext");
    openssl_ok(
        w,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "other-root.pem",
            "-CAkey",
            "other.key",
            "-days",
            "30",
            "-extfile",
            "ca.ext",
            "-out",
            "foreign.pem",
        ],
    );
    refuse(
        &msp.w("foreign.pem"),
        &msp_root,
        &msp_crl,
        "was not issued by the MSP root",
    );
    // CA:FALSE, from a root with a current CRL of its own (openssl's).
    let other_root = msp.w("other-root.pem");
    let other_leaf = msp.w(&msp.leaf("other-leaf", &other_root, "other.key", HOST));
    let other_crl = openssl_crl(w, "other.key", "other-root.pem", "other.crl");
    refuse(&other_leaf, &other_root, &other_crl, "CA:FALSE");

    // The re-root, with hooks recording the event.
    let rerooted = customer.w("rerooted.pem");
    let hooks_file = hooks(&customer.work);
    customer.signer_ok(&[
        "reroot",
        "--cert",
        path_str(&original),
        "--msp-root",
        path_str(&msp_root),
        "--msp-crl",
        path_str(&msp_crl),
        "--permit-dns",
        "acme.example",
        "--out",
        path_str(&rerooted),
        "--yes",
        "--hooks",
        path_str(&hooks_file),
    ]);
    assert_eq!(
        kept_bytes(&original),
        kept_bytes(&rerooted),
        "SPKI, subject and SKI DER"
    );
    assert_eq!(pkilint(&rerooted, false), "", "rerooted certificate");
    let text = openssl_ok(w, &["x509", "-in", path_str(&rerooted), "-noout", "-text"]);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    for dns in ["DNS:acme.od.kiwistack.io", "DNS:acme.example"] {
        assert!(text.contains(dns), "{dns}: {text}");
    }
    let msp_fp = fingerprint(w, &msp_root);
    let event = hook_json(&customer.work, "rerooted");
    assert_eq!(event["event"], "rerooted");
    assert_eq!(event["details"]["original_serial"], ledger_serial);
    assert_eq!(event["details"]["msp_root_sha256"], msp_fp);
    let ledger = String::from_utf8(customer.ledger_bytes()).expect("utf-8");
    let last: serde_json::Value =
        serde_json::from_str(ledger.lines().last().expect("entry")).expect("json");
    let recorded = &last["event"]["rerooted"];
    assert_eq!(recorded["original_serial"], ledger_serial);
    assert_eq!(recorded["msp_root_sha256"], msp_fp);
    customer.assert_ledger_ok();
    let new_serial = recorded["serial"].as_str().expect("serial");
    let exported = customer.w("exported.pem");
    customer.signer_ok(&[
        "export",
        "--serial",
        new_serial,
        "--out",
        path_str(&exported),
    ]);
    assert_eq!(
        std::fs::read(&exported).expect("exported"),
        std::fs::read(&rerooted).expect("rerooted")
    );
    let status = customer.signer_ok(&["status", "--warn-days", "4000"]);
    assert!(
        status.contains(new_serial) && status.contains("rerooted"),
        "{status}"
    );
    let status = customer.signer_ok(&["status", "--warn-days", "30"]);
    assert!(status.contains("expiring within 30 days (0)"), "{status}");

    // The MSP hands over: affiliationChanged, the customer root's fingerprint recorded.
    let msp_hooks = hooks(w);
    let handover_crl = msp.w("msp-2.crl");
    msp.signer_ok(&[
        "handover",
        "--serial",
        &serial,
        "--new-root",
        path_str(&customer_root),
        "--out",
        path_str(&handover_crl),
        "--yes",
        "--hooks",
        path_str(&msp_hooks),
    ]);
    let crl_text = openssl_ok(
        w,
        &["crl", "-in", path_str(&handover_crl), "-noout", "-text"],
    );
    assert!(crl_text.contains("Affiliation Changed"), "{crl_text}");
    let customer_fp = fingerprint(w, &customer_root);
    let msp_ledger = String::from_utf8(msp.ledger_bytes()).expect("utf-8");
    assert!(msp_ledger.contains(&format!("\"new_root_sha256\":\"{customer_fp}\"")));
    let event = hook_json(w, "handed_over");
    assert_eq!(event["details"]["new_root_sha256"], customer_fp);
    msp.assert_ledger_ok();

    // The old leaf: valid under the customer's root, revoked in the MSP chain.
    let (ok, said) = verify(w, &[], &customer_root, &rerooted);
    assert!(ok, "under the customer's root: {said}");
    // The check fails. -crl_check looks only for the leaf issuer's CRL, so it fails
    // for want of one; with the intermediate's own (empty) CRL and the whole chain checked
    // (-crl_check_all), openssl names the reason: the intermediate is revoked.
    let crl_check = ["-crl_check", "-CRLfile", path_str(&handover_crl)];
    let (ok, said) = verify(w, &crl_check, &msp_root, &original);
    assert!(!ok, "{said}");
    let int_crl = openssl_crl(w, "int.key", "original.pem", "int.crl");
    let all = |crl: &Path| {
        let (a, b) = (path_str(&int_crl).to_string(), path_str(crl).to_string());
        verify(
            w,
            &["-crl_check_all", "-CRLfile", &a, "-CRLfile", &b],
            &msp_root,
            &original,
        )
    };
    let (ok, said) = all(&msp_crl);
    assert!(ok, "before the hand-over: {said}");
    let (ok, said) = all(&handover_crl);
    assert!(!ok && said.contains("certificate revoked"), "{said}");
}
