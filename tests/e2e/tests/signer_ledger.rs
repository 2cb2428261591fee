//! The ledger through the real binary: it verifies after every command, `--expect-head`
//! catches truncation, and a one-byte edit anywhere is reported with the entry's number.

use kiwi_e2e::{path_str, policy_oid, stderr, stdout, Fixture};

#[test]
fn ledger_verifies_after_every_command_and_reports_one_byte_edits() {
    let f = Fixture::new();
    f.assert_ledger_ok();
    let csr = f.csr("acme", "P-256", &[]);
    let cert = f.sign(&csr, "acme", "core", "acme.pem");
    f.assert_ledger_ok();
    let serial = f.serial_of(&cert);
    f.revoke(&serial, "superseded", "crl1.pem");
    f.assert_ledger_ok();
    let crl2 = f.w("crl2.pem");
    let printed = f.signer_ok(&["crl", "--out", path_str(&crl2)]);
    let verified = f.signer_ok(&["ledger", "verify"]);

    // The head printed by the last command is what verify reports, and --expect-head holds.
    let ledger_path = f.ca.join("ledger.jsonl");
    let original = std::fs::read_to_string(&ledger_path).expect("ledger");
    let lines: Vec<&str> = original.lines().collect();
    // root_created, intermediate_issued, revoked, crl_issued, crl_issued
    assert_eq!(lines.len(), 5, "{original}");
    let head: serde_json::Value = serde_json::from_str(lines[4]).expect("entry is JSON");
    let head = head["hash"].as_str().expect("hash").to_string();
    // The head is printed in groups of four hex digits for the witness.
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        squeeze(&printed).contains(&head),
        "crl did not print the head {head}:\n{printed}"
    );
    assert!(
        squeeze(&verified).contains(&head),
        "verify did not print the head {head}:\n{verified}"
    );
    f.signer_ok(&["ledger", "verify", "--expect-head", &head]);

    // Truncation (the newest entry removed) is caught by --expect-head.
    let truncated: String = lines[..4].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&ledger_path, &truncated).expect("write");
    let o = f.signer(&["ledger", "verify", "--expect-head", &head]);
    assert!(
        !o.status.success(),
        "a truncated ledger verified against the witnessed head"
    );

    // One changed byte in each entry, at its start, middle and end: reported with its number.
    for (n, line) in lines.iter().enumerate() {
        let start: usize = lines[..n].iter().map(|l| l.len() + 1).sum();
        for offset in [1, line.len() / 2, line.len() - 2] {
            let mut bytes = original.clone().into_bytes();
            let at = start + offset;
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            std::fs::write(&ledger_path, &bytes).expect("write");
            let o = f.signer(&["ledger", "verify"]);
            let err = stderr(&o);
            assert!(
                !o.status.success(),
                "an edit at entry {n} offset {offset} verified:\n{}",
                stdout(&o)
            );
            assert!(
                err.contains(&format!("entry {n}")),
                "edit at entry {n} offset {offset} not attributed to it:\n{err}"
            );
        }
    }

    // Restored, it verifies again; and commands refuse to run on a damaged ledger.
    std::fs::write(&ledger_path, &original).expect("restore");
    f.assert_ledger_ok();
    let mut damaged = original.clone().into_bytes();
    let at = original.len() - 10;
    damaged[at] = if damaged[at] == b'a' { b'b' } else { b'a' };
    std::fs::write(&ledger_path, &damaged).expect("write");
    let out = f.w("after-damage.pem");
    let o = f.signer(&["crl", "--out", path_str(&out)]);
    assert!(!o.status.success(), "crl ran on a damaged ledger");
    assert!(!out.exists());
    assert_eq!(std::fs::read(&ledger_path).expect("ledger"), damaged);
}

/// The ledger with `edit` applied to entry `at` and every hash after it recomputed, as someone
/// rewriting the ledger without the witness's head would do.
fn rewrite(text: &str, at: usize, edit: impl Fn(&mut kiwi_signer::ledger::Event)) -> String {
    use sha2::Digest as _;
    let mut out = String::new();
    let mut prev = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut e: kiwi_signer::ledger::Entry = serde_json::from_str(line).expect("entry");
        if i == at {
            edit(&mut e.event);
        }
        if i > 0 {
            e.prev = prev.clone();
        }
        e.hash = String::new();
        e.hash = hex::encode(sha2::Sha256::digest(
            serde_json::to_string(&e).expect("json"),
        ));
        prev = e.hash.clone();
        out.push_str(&serde_json::to_string(&e).expect("json"));
        out.push('\n');
    }
    out
}

#[test]
fn verify_checks_recorded_slug_tier_subject_and_key_id_against_the_certificate() {
    use kiwi_signer::ledger::Event;
    let f = Fixture::new();
    let acme = f.csr("acme", "P-256", &[]);
    f.sign(&acme, "acme", "core", "acme.pem");
    let globex = f.csr("globex", "P-256", &[]);
    f.sign(&globex, "globex", "mesh", "globex.pem");
    let path = f.ca.join("ledger.jsonl");
    let original = std::fs::read_to_string(&path).expect("ledger");
    // The rewrite itself is faithful: unchanged, the ledger still verifies.
    std::fs::write(&path, rewrite(&original, 1, |_| {})).expect("write");
    f.assert_ledger_ok();

    type Edit = Box<dyn Fn(&mut Event)>;
    let mesh_oid = policy_oid("mesh");
    let tier_needle = format!(
        "recorded tier `fleet` differs from the certificate's: it carries tier mesh's policy OID {mesh_oid}"
    );
    let cases: [(usize, &str, Edit); 5] = [
        (
            2,
            &tier_needle,
            Box::new(|ev| {
                if let Event::IntermediateIssued { tier, .. } = ev {
                    *tier = kiwi_signer::slug::Tier::Fleet;
                }
            }),
        ),
        (
            1,
            "recorded slug `globex` differs from the certificate's",
            Box::new(|ev| {
                if let Event::IntermediateIssued { slug, .. } = ev {
                    *slug = kiwi_signer::slug::Slug::parse("globex").expect("slug");
                }
            }),
        ),
        (
            2,
            "recorded subject `O=KiwiStack, OU=globex, CN=initech` differs",
            Box::new(|ev| {
                if let Event::IntermediateIssued { subject, .. } = ev {
                    *subject = subject.replace("CN=globex", "CN=initech");
                }
            }),
        ),
        (
            1,
            "recorded key id differs",
            Box::new(|ev| {
                if let Event::IntermediateIssued { key_id, .. } = ev {
                    *key_id = "00".repeat(20);
                }
            }),
        ),
        (
            0,
            "recorded subject `CN=Rogue Root` differs",
            Box::new(|ev| {
                if let Event::RootCreated { subject, .. } = ev {
                    *subject = "CN=Rogue Root".into();
                }
            }),
        ),
    ];
    for (at, needle, edit) in cases {
        std::fs::write(&path, rewrite(&original, at, edit)).expect("write");
        let o = f.signer(&["ledger", "verify"]);
        assert!(!o.status.success(), "{needle}: verify passed");
        assert!(
            stderr(&o).contains(&format!("entry {at}")) && stderr(&o).contains(needle),
            "{needle}: {}",
            stderr(&o)
        );
    }
}
