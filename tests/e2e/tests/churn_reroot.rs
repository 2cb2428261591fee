//! Churn hand-over, as openssl and pkilint see it: the MSP signs an intermediate for a customer
//! (its own key, made with openssl), the intermediate issues a leaf with openssl, the customer
//! creates a root of their own (`init --org`), re-roots the intermediate under it, and the MSP
//! hands it over (revoked as affiliationChanged). The old leaf then verifies under the
//! customer's root and not under the MSP's with the MSP CRL. Refusals leave the customer's
//! ledger as it was and write nothing: a keyCompromise-revoked certificate, one another root
//! issued, a CA:FALSE one.

use std::path::Path;

use kiwi_e2e::{openssl, openssl_ok, path_str, pkilint, stderr, stdout, Fixture};

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
    (
        c.tbs_certificate.subject_pki.raw.to_vec(),
        c.subject().as_raw().to_vec(),
        ski,
    )
}

/// Writes an openssl extension file into `dir`.
fn ext(dir: &Path, name: &str, text: &str) -> String {
    std::fs::write(dir.join(name), text).expect("ext file");
    name.to_string()
}

/// Signs `csr` with `ca`/`ca_key` (openssl) using the extensions in `ext_file`.
fn openssl_sign(dir: &Path, csr: &str, ca: &str, ca_key: &str, ext_file: &str, out: &str) {
    openssl_ok(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-set_serial",
            "4242",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            ext_file,
            "-out",
            out,
        ],
    );
}

/// Hooks file recording each event's JSON into `dir/<event>.json`.
fn hooks(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("hooks:\n");
    for event in ["rerooted", "handed_over"] {
        let out = dir.join(format!("{event}.json"));
        text.push_str(&format!(
            "  - name: record-{event}\n    event: {event}\n    phase: post\n    timeout_secs: 10\n    run: [sh, -c, 'cat > {}']\n",
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
    openssl_ok(
        w,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "leaf.key",
        ],
    );
    openssl_ok(
        w,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-subj",
            "/CN=web.acme.od.kiwistack.io",
            "-out",
            "leaf.csr",
        ],
    );
    let leaf_ext = ext(
        w,
        "leaf.ext",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:web.acme.od.kiwistack.io\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );
    openssl_sign(
        w,
        "leaf.csr",
        "original.pem",
        "int.key",
        &leaf_ext,
        "leaf.pem",
    );
    let msp_root = msp.root_pem();
    openssl_ok(
        w,
        &[
            "verify",
            "-CAfile",
            path_str(&msp_root),
            "-untrusted",
            "original.pem",
            "leaf.pem",
        ],
    );
    let msp_crl = msp.w("msp-1.crl");
    msp.signer_ok(&["crl", "--out", path_str(&msp_crl)]);

    // The customer's own root: no KiwiStack name in it.
    let customer = Fixture::with_root("policies/customer-root.yaml", &["--org", "Acme GmbH"]);
    let customer_root = customer.root_pem();
    let subject = openssl_ok(
        w,
        &[
            "x509",
            "-in",
            path_str(&customer_root),
            "-noout",
            "-subject",
        ],
    );
    assert!(
        subject.contains("O = Acme GmbH, CN = Acme GmbH Root CA"),
        "{subject}"
    );
    let text = openssl_ok(
        w,
        &["x509", "-in", path_str(&customer_root), "-noout", "-text"],
    );
    assert!(!text.to_lowercase().contains("kiwistack"), "{text}");
    assert_eq!(pkilint(&customer_root, false), "", "customer root");

    // Refusals: nothing written, the customer's ledger unchanged.
    let refuse = |cert: &Path, root: &Path, crl: &Path, expect: &str| {
        let before = customer.ledger_bytes();
        let out = customer.w("refused.pem");
        let o = customer.signer(&[
            "reroot",
            "--cert",
            path_str(cert),
            "--msp-root",
            path_str(root),
            "--msp-crl",
            path_str(crl),
            "--out",
            path_str(&out),
            "--yes",
        ]);
        assert!(!o.status.success(), "{expect}: {}", stdout(&o));
        assert!(stderr(&o).contains(expect), "{expect}: {}", stderr(&o));
        assert!(!out.exists(), "{expect}");
        assert_eq!(before, customer.ledger_bytes(), "{expect}");
    };
    // keyCompromise on the MSP CRL.
    let leaked_csr = msp.csr("leaked", "P-256", &[]);
    let leaked = msp.sign(&leaked_csr, "acme", "mesh", "leaked.pem");
    let kc_crl = msp.revoke(&msp.serial_of(&leaked), "keyCompromise", "kc.crl");
    refuse(&leaked, &msp_root, &kc_crl, "as revoked (keyCompromise)");
    // Another root (openssl's, with the MSP root's very name) issued it.
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
            "/O=KiwiStack/CN=KiwiStack Root CA R1",
            "-days",
            "30",
            "-out",
            "other-root.pem",
        ],
    );
    let ca_ext = ext(w, "ca.ext", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n");
    openssl_sign(
        w,
        "int.csr",
        "other-root.pem",
        "other.key",
        &ca_ext,
        "foreign.pem",
    );
    refuse(
        &msp.w("foreign.pem"),
        &msp_root,
        &msp_crl,
        "was not issued by the MSP root",
    );
    // CA:FALSE, from a root with a CRL of its own (openssl's).
    openssl_sign(
        w,
        "leaf.csr",
        "other-root.pem",
        "other.key",
        &leaf_ext,
        "other-leaf.pem",
    );
    std::fs::write(w.join("index.txt"), "").expect("index");
    std::fs::write(w.join("crlnumber"), "01\n").expect("crlnumber");
    std::fs::write(
        w.join("ca.cnf"),
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\ncrlnumber=crlnumber\ndefault_md=sha256\ndefault_crl_days=30\n",
    )
    .expect("ca.cnf");
    openssl_ok(
        w,
        &[
            "ca",
            "-gencrl",
            "-config",
            "ca.cnf",
            "-keyfile",
            "other.key",
            "-cert",
            "other-root.pem",
            "-out",
            "other.crl",
        ],
    );
    refuse(
        &msp.w("other-leaf.pem"),
        &msp.w("other-root.pem"),
        &msp.w("other.crl"),
        "CA:FALSE",
    );

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
    assert!(
        text.contains("DNS:acme.od.kiwistack.io") && text.contains("DNS:acme.example"),
        "{text}"
    );
    let event = hook_json(&customer.work, "rerooted");
    assert_eq!(event["event"], "rerooted");
    assert_eq!(event["details"]["original_serial"], ledger_serial);
    let ledger = String::from_utf8(customer.ledger_bytes()).expect("utf-8");
    let last: serde_json::Value =
        serde_json::from_str(ledger.lines().last().expect("entry")).expect("json");
    let recorded = &last["event"]["rerooted"];
    assert_eq!(recorded["original_serial"], ledger_serial);
    let msp_fp = openssl_ok(
        w,
        &[
            "x509",
            "-in",
            path_str(&msp_root),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let msp_fp = msp_fp
        .trim()
        .rsplit('=')
        .next()
        .expect("fp")
        .replace(':', "")
        .to_lowercase();
    assert_eq!(recorded["msp_root_sha256"], msp_fp);
    assert_eq!(event["details"]["msp_root_sha256"], msp_fp);
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
        std::fs::read(&exported).expect("e"),
        std::fs::read(&rerooted).expect("r")
    );
    let status = customer.signer_ok(&["status", "--warn-days", "4000"]);
    assert!(
        status.contains(new_serial) && status.contains("rerooted"),
        "{status}"
    );
    let status = customer.signer_ok(&["status", "--warn-days", "30"]);
    assert!(status.contains("expiring within 30 days (0)"), "{status}");

    // The MSP hands over: affiliationChanged, the customer root's fingerprint recorded.
    let msp_hooks = hooks(&msp.work);
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
    let customer_fp = openssl_ok(
        w,
        &[
            "x509",
            "-in",
            path_str(&customer_root),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let customer_fp = customer_fp
        .trim()
        .rsplit('=')
        .next()
        .expect("fp")
        .replace(':', "")
        .to_lowercase();
    let msp_ledger = String::from_utf8(msp.ledger_bytes()).expect("utf-8");
    assert!(msp_ledger.contains(&format!("\"new_root_sha256\":\"{customer_fp}\"")));
    assert_eq!(
        hook_json(&msp.work, "handed_over")["details"]["new_root_sha256"],
        customer_fp
    );
    msp.assert_ledger_ok();

    // The old leaf: valid under the customer's root, revoked in the MSP chain.
    let (ok, said) = verify::<&str>(w, &[], &customer_root, &rerooted);
    assert!(ok, "under the customer's root: {said}");
    // The issue's check: fails. -crl_check looks only for the leaf issuer's CRL, so it fails
    // for want of one; with the intermediate's own (empty) CRL and the whole chain checked
    // (-crl_check_all), openssl names the reason: the intermediate is revoked.
    let (ok, said) = verify(
        w,
        &["-crl_check", "-CRLfile", path_str(&handover_crl)],
        &msp_root,
        &original,
    );
    assert!(!ok, "{said}");
    openssl_ok(
        w,
        &[
            "ca",
            "-gencrl",
            "-config",
            "ca.cnf",
            "-keyfile",
            "int.key",
            "-cert",
            "original.pem",
            "-out",
            "int.crl",
        ],
    );
    let all = |crl: &Path| {
        [
            "-crl_check_all",
            "-CRLfile",
            "int.crl",
            "-CRLfile",
            path_str(crl),
        ]
        .map(str::to_string)
    };
    let (ok, said) = verify(w, &all(&msp_crl), &msp_root, &original);
    assert!(ok, "before the hand-over: {said}");
    let (ok, said) = verify(w, &all(&handover_crl), &msp_root, &original);
    assert!(!ok && said.contains("certificate revoked"), "{said}");
}

/// `openssl verify ARGS -CAfile ROOT -untrusted INTERMEDIATE leaf.pem`: success and output.
fn verify<S: AsRef<str>>(
    dir: &Path,
    args: &[S],
    root: &Path,
    intermediate: &Path,
) -> (bool, String) {
    let mut all: Vec<&str> = vec!["verify"];
    all.extend(args.iter().map(AsRef::as_ref));
    all.extend([
        "-CAfile",
        path_str(root),
        "-untrusted",
        path_str(intermediate),
        "leaf.pem",
    ]);
    let o = openssl(dir, &all);
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}
