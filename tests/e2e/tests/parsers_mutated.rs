//! Every parser that reads outside input, fed thousands of mutated copies of real inputs: it
//! must answer with a value or an error, never panic. A stable-toolchain stand-in for fuzzing
//! (cargo-fuzz needs nightly): the seeds are real files made by the tools (a CSR, a ledger, a
//! CRL, root.pem, `ca.toml`, the policies, the hooks file, the ceremony file examples, an
//! allowed-signers line, a registry entry, `.sops.yaml` and the sops corpus), the mutations
//! are byte flips, special characters, deleted, repeated and truncated ranges, from a fixed
//! PRNG so that a failure repeats.
//!
//! `KIWI_MUTATIONS=N` sets the mutants per seed (default 150) and `KIWI_MUTATION_SEED=S` picks
//! another sequence of mutants (default 0), for longer runs by hand. A mutant that panics is
//! saved under `target/mutants/` and named in the failure.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiwi_e2e::{kiwictl_ok, path_str, run, stderr, workspace_root, Fixture};
use kiwi_signer::slug::Tier;
use kiwi_tooling::sops::{FileFormat, Identities, Unlock};

/// splitmix64: small, fixed, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPECIAL: &[u8] = b"\0\n\r\t :-#'\"[]{}&*!|>%@`,\\=\xff";

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(SPECIAL[rng.below(SPECIAL.len())]);
            continue;
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = SPECIAL[rng.below(SPECIAL.len())],
            2 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let copy = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, copy);
            }
            4 => b.truncate(at),
            _ => b[at] = rng.next() as u8,
        }
    }
    b
}

/// A call into a parser; whatever it returns is dropped.
type ParseFn<'a> = Box<dyn Fn(&[u8]) + 'a>;

/// One parser under test: a name, its seeds, and the call.
struct Target<'a> {
    name: &'a str,
    seeds: Vec<Vec<u8>>,
    parse: ParseFn<'a>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn parsers_never_panic_on_mutated_input() {
    let per_seed: usize = std::env::var("KIWI_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let sequence: u64 = std::env::var("KIWI_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let root = workspace_root();

    // Real inputs: a CA with one intermediate signed and revoked.
    let f = Fixture::new();
    let csr = f.csr("acme", "P-256", &[]);
    let cert = f.sign(&csr, "acme", "core", "acme.crt");
    let crl = f.revoke(&f.serial_of(&cert), "superseded", "acme.crl.der");
    let root_pem = read(&f.root_pem());
    kiwi_e2e::openssl_ok(
        &f.work,
        &[
            "req",
            "-in",
            "acme.csr",
            "-outform",
            "DER",
            "-out",
            "acme.csr.der",
        ],
    );

    // A registry entry written by `kiwictl registry add`.
    let platform = f.tmp.path().join("platform");
    kiwictl_ok(
        &[
            "registry",
            "add",
            path_str(&platform),
            "--slug",
            "acme",
            "--tier",
            "mesh",
            "--jurisdiction",
            "BE",
            "--core-base",
            "v1.4.2",
            "--mesh-base",
            "v0.7.1",
        ],
        None,
    );
    let entry = std::fs::read_dir(platform.join("customers"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "yaml"))
        .unwrap_or_else(|| panic!("no registry entry under {}", platform.display()));

    let mut ids = Identities::empty();
    ids.add_text(
        &std::fs::read_to_string(root.join("tests/fixtures/sops/keys/test1.agekey")).expect("key"),
        "test1.agekey",
    )
    .expect("identity");
    let corpus = root.join("tests/fixtures/sops/corpus");
    let corpus_files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .collect();
    let scratch = tempfile::tempdir().expect("tempdir");
    let policy_dir = scratch.path().join("policies");
    std::fs::create_dir(&policy_dir).expect("dir");
    let ca_copy = scratch.path().join("ca");
    let copied = run(Command::new("cp").arg("-r").arg(&f.ca).arg(&ca_copy));
    assert!(copied.status.success(), "{}", stderr(&copied));
    kiwi_signer::ca::Ca::open(&ca_copy).expect("the copied CA opens before any mutation");

    let targets: Vec<Target<'_>> = vec![
        Target {
            name: "csr",
            seeds: vec![read(&csr), read(&f.w("acme.csr.der"))],
            parse: Box::new(|b| {
                let _ = kiwi_signer::csr::parse_and_verify(b, "mutant");
            }),
        },
        Target {
            name: "certificate and CRL",
            seeds: vec![read(&cert), read(&crl), root_pem.clone()],
            parse: Box::new(|b| {
                let der = pem_or_der(b);
                let _ = kiwi_signer::x509::parse_cert(&der);
                let _ = kiwi_signer::x509::parse_crl(&der);
                let _ = kiwi_tooling::crl::check(b, &root_pem, 7, time::OffsetDateTime::now_utc());
            }),
        },
        Target {
            name: "ledger",
            seeds: vec![f.ledger_bytes()],
            parse: Box::new(|b| {
                let _ = kiwi_signer::ledger::verify_text("ledger.jsonl", &text(b));
            }),
        },
        Target {
            name: "policies",
            seeds: [
                "root",
                "customer-root",
                "intermediate-core",
                "intermediate-mesh",
                "intermediate-fleet",
                "intermediate-core-shared",
            ]
            .iter()
                .map(|n| read(&root.join(format!("policies/{n}.yaml"))))
                .collect(),
            parse: Box::new(|b| {
                let root_file = policy_dir.join("root.yaml");
                std::fs::write(&root_file, b).expect("write");
                let _ = kiwi_signer::policy::load_root(&root_file);
                for tier in [Tier::Core, Tier::Mesh, Tier::Fleet] {
                    let p = policy_dir.join(kiwi_signer::policy::intermediate_file(tier));
                    std::fs::write(&p, b).expect("write");
                    let _ = kiwi_signer::policy::load_intermediate(&policy_dir, tier);
                }
                let shared = policy_dir.join(kiwi_signer::policy::CORE_SHARED_FILE);
                std::fs::write(&shared, b).expect("write");
                let _ = kiwi_signer::policy::load_core_shared(&policy_dir);
            }),
        },
        Target {
            name: "ca.toml",
            seeds: vec![read(&f.ca.join("ca.toml"))],
            parse: Box::new(|b| {
                std::fs::write(ca_copy.join("ca.toml"), b).expect("write");
                let _ = kiwi_signer::ca::Ca::open(&ca_copy);
            }),
        },
        Target {
            name: "hooks file",
            seeds: vec![read(&root.join("ceremony/hooks.yaml"))],
            parse: Box::new(|b| {
                let _ = kiwi_signer::hooks::Hooks::parse("hooks.yaml", &text(b), Path::new("/"));
            }),
        },
        Target {
            name: "ceremony file",
            seeds: [
                "signing",
                "revoke",
                "root-init",
                "backup-import",
                "crl-reissue",
                "customer-root-init",
                "reroot",
                "handover",
                "renew",
            ]
                .iter()
                .map(|n| read(&root.join(format!("ceremony/examples/{n}.yaml"))))
                .collect(),
            parse: Box::new(|b| {
                let _ = kiwi_signer::ceremony::script::Script::parse(
                    Path::new("c.yaml"),
                    Path::new("/m"),
                    b,
                );
            }),
        },
        Target {
            name: "allowed signers",
            seeds: vec![b"ben@example.org namespaces=\"kiwi-ceremony\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEq5Qgzc5zjf6lyucxB3BiXxdiY+JRXbGWj9fKEilTZA ben\n".to_vec()],
            parse: Box::new(|b| {
                let _ = kiwi_signer::ceremony::script::sshsig::parse_allowed_signers(
                    "allowed",
                    &text(b),
                );
            }),
        },
        Target {
            name: "slug",
            seeds: vec![b"acme-corp-01".to_vec()],
            parse: Box::new(|b| {
                let _ = kiwi_signer::slug::Slug::parse(&text(b));
            }),
        },
        Target {
            name: "registry entry",
            seeds: vec![read(&entry)],
            parse: Box::new(|b| {
                let _ = kiwi_tooling::registry::check_entry(Path::new("acme.yaml"), "acme", &text(b));
            }),
        },
        Target {
            name: ".sops.yaml",
            seeds: vec![b"creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    encrypted_regex: ^(data|key)$\n    key_groups:\n      - age:\n          - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n  - age: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n".to_vec()],
            parse: Box::new(|b| {
                let p = scratch.path().join(".sops.yaml");
                std::fs::write(&p, b).expect("write");
                let _ = kiwi_tooling::sops::config::SopsConfig::load(&p);
            }),
        },
    ];
    let mut all = targets;
    for file in &corpus_files {
        let fmt = FileFormat::from_path(file);
        let ids = &ids;
        all.push(Target {
            name: "sops file",
            seeds: vec![read(file)],
            parse: Box::new(move |b| {
                let _ = kiwi_tooling::sops::open(b, fmt, Unlock::Identities(ids));
            }),
        });
    }

    // Quiet panics while mutants run; each one is counted and saved instead.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let saved = root.join("target/mutants");
    let mut panics = Vec::new();
    let mut runs = 0usize;
    for (t_index, t) in all.iter().enumerate() {
        for (s_index, seed) in t.seeds.iter().enumerate() {
            // The seed itself must parse without panicking too.
            let mut rng = Rng(0x6b69_7769
                ^ sequence.rotate_left(48)
                ^ ((t_index as u64) << 32)
                ^ s_index as u64);
            for i in 0..=per_seed {
                let input = if i == 0 {
                    seed.clone()
                } else {
                    mutate(seed, &mut rng)
                };
                runs += 1;
                if catch_unwind(AssertUnwindSafe(|| (t.parse)(&input))).is_err() {
                    let _ = std::fs::create_dir_all(&saved);
                    let file = saved.join(format!(
                        "{}-{t_index}-{s_index}-{i}",
                        t.name.replace([' ', '.'], "_")
                    ));
                    let _ = std::fs::write(&file, &input);
                    panics.push(format!(
                        "{} (seed {s_index}, mutant {i}): {}",
                        t.name,
                        file.display()
                    ));
                }
            }
        }
    }
    std::panic::set_hook(default_hook);
    assert!(runs > 1000, "only {runs} inputs were tried");
    assert!(
        panics.is_empty(),
        "{} of {runs} inputs made a parser panic:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

/// The DER inside a PEM, or the bytes as they are.
fn pem_or_der(b: &[u8]) -> Vec<u8> {
    match pem::parse(b) {
        Ok(p) => p.into_contents(),
        Err(_) => b.to_vec(),
    }
}
