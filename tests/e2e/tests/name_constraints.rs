//! An intermediate for `acme` constrains every name form a leaf can carry, as judged by
//! `openssl verify` on leaves that openssl itself signs with the intermediate's key: DNS, URI
//! (SPIFFE IDs) and email outside `acme.od.kiwistack.io` are refused, the customer's own
//! names accepted. Python `cryptography` reads the constraints back, pkilint finds nothing.
//! openssl and Python `cryptography` read each intermediate's tier marker (its tier's policy
//! OID in certificatePolicies).
//!
//! The shipped policies grant no directoryName subtree (policies/README.md, "Subject names");
//! a policy that adds one (`permitted_subject`) is checked too, including the reason it is
//! not shipped: a leaf whose subject is only a CN, as step-ca issues, is then refused.

use std::path::{Path, PathBuf};

use kiwi_e2e::{
    check_pki, openssl, openssl_leaf, path_str, pkilint, policy_oid, stderr, stdout,
    workspace_root, Fixture,
};

/// The shipped policies, with `permitted_subject` added to the core tier.
fn policies_with_subject_tree(dir: &Path) -> PathBuf {
    std::fs::create_dir(dir).expect("policies dir");
    for entry in std::fs::read_dir(workspace_root().join("policies")).expect("policies") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let name = p.file_name().expect("file name");
            let mut text = std::fs::read_to_string(&p).expect("read policy");
            if name == "intermediate-core.yaml" {
                text = text.replace(
                    "  excluded_ip:",
                    "  permitted_subject:\n    organization: KiwiStack\n    \
                     organizational_unit: \"{slug}\"\n  excluded_ip:",
                );
            }
            std::fs::write(dir.join(name), text).expect("write policy");
        }
    }
    dir.join("root.yaml")
}

#[test]
fn intermediates_constrain_every_name_form() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = Fixture::with_root_policy(&policies_with_subject_tree(&tmp.path().join("policies")));
    let root = f.root_pem();
    // mesh: the shipped policy; core: the same plus a directoryName subtree.
    let shipped = f.sign(&f.csr("acme", "P-256", &[]), "acme", "mesh", "acme.pem");
    let with_dn = f.sign(
        &f.csr("acme-dn", "P-256", &[]),
        "acme",
        "core",
        "acme-dn.pem",
    );
    f.assert_ledger_ok();

    let verify = |inter: &Path, key: &str, name: &str, subj: &str, san: &str| {
        let leaf = openssl_leaf(&f.work, name, inter, key, subj, san);
        let o = openssl(
            &f.work,
            &[
                "verify",
                "-CAfile",
                path_str(&root),
                "-untrusted",
                path_str(inter),
                &leaf,
            ],
        );
        (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
    };
    // Leaves of every form, each with a subject inside both intermediates' subtrees (the
    // CN is a DNS name under acme: openssl checks a CN against DNS constraints when there is
    // no DNS SAN).
    let inside = "/O=KiwiStack/OU=acme/CN=x.acme.od.kiwistack.io";
    let accepted = [
        ("dns", "DNS:x.acme.od.kiwistack.io"),
        ("spiffe", "URI:spiffe://acme.od.kiwistack.io/ns/a/sa/b"),
        ("mail", "email:ops@acme.od.kiwistack.io"),
        ("submail", "email:ops@x.acme.od.kiwistack.io"),
    ];
    let refused = [
        ("dns-globex", "DNS:globex.od.kiwistack.io"),
        ("spiffe-globex", "URI:spiffe://globex.od.kiwistack.io/ns/x"),
        ("mail-apex", "email:admin@kiwistack.io"),
        ("ip", "IP:10.0.0.1"),
    ];
    for (inter, key, tag) in [
        (&shipped, "acme.key", "shipped"),
        (&with_dn, "acme-dn.key", "dn"),
    ] {
        for (name, san) in accepted {
            let (ok, out) = verify(inter, key, &format!("{tag}-{name}"), inside, san);
            assert!(ok, "{tag}: openssl refused {san}:\n{out}");
        }
        for (name, san) in refused {
            let (ok, out) = verify(inter, key, &format!("{tag}-{name}"), inside, san);
            assert!(!ok, "{tag}: openssl accepted {san}:\n{out}");
            assert!(
                out.contains("permitted subtree violation")
                    || out.contains("excluded subtree violation"),
                "{tag} {san}: {out}"
            );
        }
    }

    // The directoryName subtree: other subjects are refused, an empty subject is not checked
    // (RFC 5280 4.2.1.10), and a CN-only subject, step-ca's usual leaf, is refused too.
    let san = "DNS:x.acme.od.kiwistack.io";
    let cn_only = "/CN=x.acme.od.kiwistack.io";
    for (name, subj, ok_wanted) in [
        ("dn-acme", "/O=KiwiStack/OU=acme/CN=x", true),
        ("dn-globex", "/O=KiwiStack/OU=globex/CN=x", false),
        ("dn-other-org", "/O=Globex/OU=acme/CN=x", false),
        ("dn-empty", "/", true),
        ("dn-cn-only", cn_only, false),
    ] {
        let (ok, out) = verify(&with_dn, "acme-dn.key", name, subj, san);
        assert_eq!(ok, ok_wanted, "{subj}:\n{out}");
    }
    // Without it (the shipped policies), a CN-only subject passes, and so does any other.
    for (name, subj) in [("cn-only", cn_only), ("other-org", "/O=Globex/CN=x")] {
        let (ok, out) = verify(&shipped, "acme.key", name, subj, san);
        assert!(ok, "{subj}:\n{out}");
    }

    // Python cryptography reads every subtree back, critical.
    let (ok, out) = check_pki(&["constraints", path_str(&with_dn)]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "critical",
            "permitted DNSName acme.od.kiwistack.io",
            "permitted RFC822Name acme.od.kiwistack.io",
            "permitted RFC822Name .acme.od.kiwistack.io",
            "permitted UniformResourceIdentifier acme.od.kiwistack.io",
            "permitted UniformResourceIdentifier .acme.od.kiwistack.io",
            "permitted DirectoryName OU=acme,O=KiwiStack",
            "excluded IPAddress 0.0.0.0/0",
            "excluded IPAddress ::/0",
        ],
        "{out}"
    );
    let (ok, out) = check_pki(&["constraints", path_str(&shipped)]);
    assert!(ok && !out.contains("DirectoryName"), "{out}");

    // The tier marker: each intermediate carries its tier's policy OID, non-critical, without
    // qualifiers, as openssl and Python cryptography read it.
    for (cert, tier) in [(&shipped, "mesh"), (&with_dn, "core")] {
        let oid = policy_oid(tier);
        let text = openssl(&f.work, &["x509", "-in", path_str(cert), "-noout", "-text"]);
        let text = stdout(&text);
        let at = text
            .find("X509v3 Certificate Policies: \n")
            .expect("policies shown");
        let shown: Vec<&str> = text[at..].lines().skip(1).take(2).map(str::trim).collect();
        assert_eq!(shown[0], format!("Policy: {oid}"), "{text}");
        assert!(
            !shown[1].starts_with("CPS") && !shown[1].starts_with("User"),
            "{text}"
        );
        let (ok, out) = check_pki(&["policies", path_str(cert)]);
        assert!(ok, "{out}");
        assert_eq!(out.trim_end(), format!("not critical\n{oid}"), "{out}");
    }

    // openssl enforces no policy unless asked, and the root needs none: `-policy_check` accepts
    // a leaf without a policy (as step-ca issues them); requiring an explicit policy refuses it.
    let leaf = openssl_leaf(
        &f.work,
        "no-policy",
        &shipped,
        "acme.key",
        "/CN=x.acme.od.kiwistack.io",
        "DNS:x.acme.od.kiwistack.io",
    );
    let mesh_oid = policy_oid("mesh");
    for (extra, ok_wanted) in [
        (vec!["-policy_check"], true),
        (
            vec!["-explicit_policy", "-policy", mesh_oid.as_str()],
            false,
        ),
    ] {
        let mut args = vec!["verify", "-CAfile", path_str(&root), "-untrusted"];
        args.extend([path_str(&shipped)]);
        args.extend(extra.iter().copied());
        args.push(&leaf);
        let o = openssl(&f.work, &args);
        assert_eq!(o.status.success(), ok_wanted, "{extra:?}: {}", stderr(&o));
    }

    for cert in [&shipped, &with_dn] {
        let findings = pkilint(cert, false);
        assert!(
            findings.is_empty(),
            "pkilint on {}:\n{findings}",
            cert.display()
        );
    }
}
