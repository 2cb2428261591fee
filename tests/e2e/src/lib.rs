//! Shared helpers for the end-to-end tests: locate our binaries and the tools we did not write
//! (openssl, pkilint, Python `cryptography`, sops, age), run them, and build CA fixtures.
//!
//! A missing tool is a test failure that says how to install it (`scripts/install-test-deps`),
//! never a silent skip: a green run must mean the outside tools really checked our output.
#![deny(missing_docs)]

pub mod sops;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// One of our binaries, from the same target directory as the running test.
///
/// `scripts/test` builds them first (`cargo build --workspace --bins`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A program installed into the test venv by `scripts/install-test-deps` (`KIWI_VENV`
/// overrides the venv's location).
pub fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("KIWI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    let path = venv.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing; run scripts/install-test-deps (it installs the test venv)",
        path.display()
    );
    path
}

/// Runs a command to completion with no standard input, capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}; run scripts/install-test-deps"))
}

/// Runs a command and panics with its output unless it exits 0; returns stdout as text.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl` with the given arguments, run in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    run(Command::new("openssl").current_dir(dir).args(args))
}

/// `openssl` that must succeed; returns stdout.
pub fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    run_ok(Command::new("openssl").current_dir(dir).args(args))
}

/// Text of a process's standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Text of a process's standard output.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The rehearsal passphrase the fixtures use (software backend only).
pub const PASSPHRASE: &str = "correct horse battery staple e2e";

/// A fresh CA on the software backend in a temporary directory, plus a scratch directory
/// for CSRs and outputs.
pub struct Fixture {
    /// Holds everything; removed on drop.
    pub tmp: tempfile::TempDir,
    /// The CA directory (`tmp/ca`).
    pub ca: PathBuf,
    /// Scratch space for CSRs, keys and outputs (`tmp/work`).
    pub work: PathBuf,
    /// The passphrase file (`tmp/pin`, mode 0600).
    pub pin: PathBuf,
}

impl Fixture {
    /// Creates the directories and runs `kiwi-signer init` with `policies/root.yaml`.
    pub fn new() -> Self {
        Self::with_root_policy(&workspace_root().join("policies/root.yaml"))
    }

    /// Like [`Fixture::new`] with another root policy; the CA reads its tiers' policies from
    /// the same directory.
    pub fn with_root_policy(policy: &Path) -> Self {
        Self::with_root(policy, &[])
    }

    /// Like [`Fixture::with_root_policy`], with extra `init` arguments (`--org` for
    /// `policies/customer-root.yaml`).
    pub fn with_root(policy: &Path, extra: &[&str]) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("temporary directory");
        let ca = tmp.path().join("ca");
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        let pin = tmp.path().join("pin");
        std::fs::write(&pin, format!("{PASSPHRASE}\n")).expect("pin file");
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let f = Fixture { tmp, ca, work, pin };
        let mut args = vec!["init", "--backend", "soft", "--policy", path_str(policy)];
        args.extend_from_slice(extra);
        let o = f.signer(&args);
        assert!(o.status.success(), "init failed: {}", stderr(&o));
        f
    }

    /// Runs `kiwi-signer CMD --ca DIR ARGS… --pin-file PIN` (the pin file only for commands
    /// that take one).
    pub fn signer(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("kiwi-signer"));
        // `ledger verify` is a two-word command; every other one is one word.
        let words = if args[0] == "ledger" { 2 } else { 1 };
        cmd.args(&args[..words])
            .arg("--ca")
            .arg(&self.ca)
            .args(&args[words..]);
        if matches!(
            args[0],
            "init" | "sign" | "revoke" | "crl" | "reroot" | "handover" | "renew"
        ) {
            cmd.arg("--pin-file").arg(&self.pin);
        }
        run(&mut cmd)
    }

    /// Like [`Fixture::signer`], but panics unless it succeeds; returns stdout.
    pub fn signer_ok(&self, args: &[&str]) -> String {
        let o = self.signer(args);
        assert!(
            o.status.success(),
            "kiwi-signer {args:?} failed ({}):\n{}",
            o.status,
            stderr(&o)
        );
        stdout(&o)
    }

    /// Path of a file in the work directory.
    pub fn w(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// The root certificate.
    pub fn root_pem(&self) -> PathBuf {
        self.ca.join("root.pem")
    }

    /// The ledger's bytes (to prove a refusal left it unchanged).
    pub fn ledger_bytes(&self) -> Vec<u8> {
        std::fs::read(self.ca.join("ledger.jsonl")).expect("ledger exists")
    }

    /// Makes an EC key (`curve` as openssl names it) and a CSR for it in the work directory;
    /// extra `openssl req` arguments (e.g. `-addext`) are appended. Returns the CSR path.
    pub fn csr(&self, name: &str, curve: &str, extra: &[&str]) -> PathBuf {
        self.w(&ec_csr(&self.work, name, curve, extra))
    }

    /// Runs `sign` for `csr` as `slug`/`tier` with `--yes` into `out`, whatever the outcome.
    pub fn sign_output(&self, csr: &Path, slug: &str, tier: &str, out: &Path) -> Output {
        self.signer(&[
            "sign",
            "--csr",
            path_str(csr),
            "--slug",
            slug,
            "--tier",
            tier,
            "--out",
            path_str(out),
            "--yes",
        ])
    }

    /// Signs `csr` for `slug`/`tier` with `--yes` into `out` (in the work directory).
    pub fn sign(&self, csr: &Path, slug: &str, tier: &str, out: &str) -> PathBuf {
        let out = self.w(out);
        let o = self.sign_output(csr, slug, tier, &out);
        assert!(
            o.status.success(),
            "kiwi-signer sign {} as {slug}/{tier} failed ({}):\n{}",
            csr.display(),
            o.status,
            stderr(&o)
        );
        out
    }

    /// Revokes `serial` (hex) for `reason` with `--yes`; the new CRL goes to `out` (in the
    /// work directory), whose path is returned.
    pub fn revoke(&self, serial: &str, reason: &str, out: &str) -> PathBuf {
        let out = self.w(out);
        self.signer_ok(&[
            "revoke",
            "--serial",
            serial,
            "--reason",
            reason,
            "--out",
            path_str(&out),
            "--yes",
        ]);
        out
    }

    /// The certificate's serial in lowercase hex, as openssl prints it.
    pub fn serial_of(&self, cert: &Path) -> String {
        let form = if path_str(cert).ends_with(".der") {
            "DER"
        } else {
            "PEM"
        };
        let s = openssl_ok(
            &self.work,
            &[
                "x509",
                "-inform",
                form,
                "-in",
                path_str(cert),
                "-noout",
                "-serial",
            ],
        );
        s.trim().trim_start_matches("serial=").to_ascii_lowercase()
    }

    /// Asserts `ledger verify` succeeds.
    pub fn assert_ledger_ok(&self) {
        self.signer_ok(&["ledger", "verify"]);
    }

    /// Issues a leaf for `host` from an intermediate whose key is `inter_key` (openssl does it,
    /// into the work directory); returns the certificate's file name.
    pub fn leaf(&self, name: &str, inter: &Path, inter_key: &str, host: &str) -> String {
        openssl_leaf(
            &self.work,
            name,
            inter,
            inter_key,
            &format!("/CN={host}"),
            &format!("DNS:{host}"),
        )
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `kiwictl` with `age_key` (if any) as the only age identity: `SOPS_AGE_KEY` and any
/// inherited `SOPS_AGE_KEY_FILE` are removed.
pub fn kiwictl(args: &[&str], age_key: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin("kiwictl"));
    cmd.args(args);
    cmd.env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE");
    if let Some(k) = age_key {
        cmd.env("SOPS_AGE_KEY_FILE", k);
    }
    run(&mut cmd)
}

/// Like [`kiwictl`], but panics unless it succeeds; returns stdout.
pub fn kiwictl_ok(args: &[&str], age_key: Option<&Path>) -> String {
    let o = kiwictl(args, age_key);
    assert!(
        o.status.success(),
        "kiwictl {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Makes `NAME.key` (an EC key on `curve`, as openssl names it) and `NAME.csr` for it in `dir`
/// with openssl; extra `openssl req` arguments are appended. Returns the CSR's file name.
pub fn ec_csr(dir: &Path, name: &str, curve: &str, extra: &[&str]) -> String {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    openssl_ok(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            &key,
        ],
    );
    let mut args = vec![
        "req",
        "-new",
        "-key",
        &key,
        "-subj",
        "/CN=csr subject",
        "-out",
        &csr,
    ];
    args.extend_from_slice(extra);
    openssl_ok(dir, &args);
    csr
}

/// Issues a leaf with openssl (a new P-256 key, 30 days) from an intermediate `inter` whose key
/// file is `inter_key` (in `dir`): subject `subj` in openssl's `/O=../CN=..` form (`/` for an
/// empty one) and subjectAltName `san` (`DNS:..`, `URI:..`, `email:..`). Returns the leaf's
/// file name in `dir`.
pub fn openssl_leaf(
    dir: &Path,
    name: &str,
    inter: &Path,
    inter_key: &str,
    subj: &str,
    san: &str,
) -> String {
    let csr = ec_csr(dir, name, "P-256", &["-subj", subj]);
    let crt = format!("{name}.pem");
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={san}\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        ),
    )
    .expect("write ext file");
    openssl_ok(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            path_str(inter),
            "-CAkey",
            inter_key,
            "-days",
            "30",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
    crt
}

/// Writes `text` to a new file created with mode 0600 (PIN files, keys taken out of secrets).
pub fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create");
    f.write_all(text.as_bytes()).expect("write");
}

/// A path as `&str` (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs pkilint's RFC 5280 linter on a PEM certificate or CRL and returns every finding at
/// WARNING or above (empty means clean).
pub fn pkilint(file: &Path, crl: bool) -> String {
    let mut cmd = if crl {
        let mut c = Command::new(venv_tool("lint_crl"));
        c.args(["lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING"]);
        c
    } else {
        let mut c = Command::new(venv_tool("lint_pkix_cert"));
        c.args(["lint", "-s", "WARNING"]);
        c
    };
    let o = run(cmd.arg(file));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    if !o.status.success() && text.trim().is_empty() {
        return format!("pkilint exited with {} and no output", o.status);
    }
    text.trim().to_string()
}

/// The certificate policy OID `policies/intermediate-TIER.yaml` names.
pub fn policy_oid(tier: &str) -> String {
    let file = workspace_root().join(format!("policies/intermediate-{tier}.yaml"));
    let text = std::fs::read_to_string(&file).expect("policy");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("certificate_policy: "))
        .expect("the policy names its OID");
    line.trim_matches('"').to_string()
}

/// Runs `tests/e2e/python/check_pki.py ARGS` (Python `cryptography`); returns whether it
/// succeeded and its output.
pub fn check_pki(args: &[&str]) -> (bool, String) {
    let script = workspace_root().join("tests/e2e/python/check_pki.py");
    let o = run(Command::new(venv_tool("python")).arg(script).args(args));
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

/// Makes an age identity at `path` with `age-keygen`; returns its public recipient.
pub fn age_keygen(path: &Path) -> String {
    run_ok(Command::new("age-keygen").arg("-o").arg(path));
    let text = std::fs::read_to_string(path).expect("key file");
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_string()
}

/// A customer state repo with its intermediate requested, signed by a [`Fixture`] and
/// installed (`repo init`, `intermediate request`, `kiwi-signer sign`, `intermediate install`).
pub struct InstalledRepo {
    /// The state repo (`work/cust-SLUG`).
    pub repo: PathBuf,
    /// The operator's age identity file.
    pub op_key: PathBuf,
    /// The operator's age recipient.
    pub op: String,
    /// The installed certificate (PEM, in the work directory).
    pub cert: PathBuf,
}

impl Fixture {
    /// Sets up `slug`'s state repo at `tier` with an installed intermediate signed by this CA;
    /// `sign_args` are extra `kiwi-signer sign` arguments (e.g. `--days 10`).
    pub fn installed_repo(&self, slug: &str, tier: &str, sign_args: &[&str]) -> InstalledRepo {
        let op_key = self.w(&format!("{slug}-operator.agekey"));
        let op = age_keygen(&op_key);
        let repo = self.w(&format!("cust-{slug}"));
        let policies = workspace_root().join("policies");
        let r = path_str(&repo);
        kiwictl_ok(
            &[
                "repo",
                "init",
                r,
                "--slug",
                slug,
                "--tier",
                tier,
                "--operator-age",
                &op,
                "--root",
                path_str(&self.root_pem()),
            ],
            None,
        );
        let csr = self.w(&format!("{slug}.csr"));
        let pol = path_str(&policies);
        kiwictl_ok(
            &[
                "intermediate",
                "request",
                "--repo",
                r,
                "--out",
                path_str(&csr),
                "--policies",
                pol,
            ],
            None,
        );
        let cert = self.w(&format!("{slug}.crt"));
        let mut args = vec![
            "sign",
            "--csr",
            path_str(&csr),
            "--slug",
            slug,
            "--tier",
            tier,
            "--out",
            path_str(&cert),
            "--yes",
        ];
        args.extend_from_slice(sign_args);
        self.signer_ok(&args);
        kiwictl_ok(
            &[
                "intermediate",
                "install",
                "--repo",
                r,
                "--cert",
                path_str(&cert),
                "--root",
                path_str(&self.root_pem()),
                "--policies",
                pol,
            ],
            Some(&op_key),
        );
        InstalledRepo {
            repo,
            op_key,
            op,
            cert,
        }
    }
}

/// A witness's SSH key: makes the ed25519 key `name` (no passphrase) in `dir` with the real
/// `ssh-keygen`, returns its public line.
pub fn witness_key(dir: &Path, name: &str) -> String {
    run_ok(
        Command::new("ssh-keygen")
            .current_dir(dir)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name]),
    );
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).expect("public key")
}

/// Signs `file` as a witness does at a ceremony (`ssh-keygen -Y sign -n kiwi-ceremony`) with
/// the key `name` in `dir`; the signature is `file.sig`.
pub fn witness_sign(dir: &Path, name: &str, file: &Path) {
    run_ok(Command::new("ssh-keygen").current_dir(dir).args([
        "-Y",
        "sign",
        "-n",
        "kiwi-ceremony",
        "-f",
        name,
        path_str(file),
    ]));
}

/// The real sops decrypting `file` with the age identity `key` (and no other).
pub fn sops_decrypt(file: &Path, key: &Path) -> Output {
    run(Command::new(venv_tool("sops"))
        .args(["--decrypt"])
        .arg(file)
        .env_remove("SOPS_AGE_KEY")
        .env("SOPS_AGE_KEY_FILE", key))
}

/// smallstep's step-ca, built offline from Debian's sources by `scripts/build-step-ca` into
/// `target/step-ca/` (cached: a no-op when it is up to date).
pub fn step_ca_binary() -> PathBuf {
    let out = workspace_root().join("target/step-ca/step-ca");
    run_ok(Command::new(workspace_root().join("scripts/build-step-ca")).arg(&out));
    out
}

/// `x509-template-check` (tests/stepca/templatecheck), built beside step-ca by
/// `scripts/build-step-ca`: renders an X.509 template as step-ca's ACME provisioner does.
pub fn x509_template_check() -> PathBuf {
    step_ca_binary().with_file_name("x509-template-check")
}

/// `acme-client` (tests/stepca/acmeclient), built beside step-ca by `scripts/build-step-ca`:
/// an RFC 8555 client (golang.org/x/crypto/acme) answering HTTP-01 on port 80 itself.
pub fn acme_client() -> PathBuf {
    step_ca_binary().with_file_name("acme-client")
}

/// Why fresh network and mount namespaces (`unshare -n -m`) cannot be made here, if they cannot
/// (they need root; CI runs as root).
pub fn cannot_unshare() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!("not root (uid {uid}); run the e2e tests as root"));
    }
    match Command::new("unshare").args(["-n", "-m", "true"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("`unshare -n -m` failed: {}", stderr(&o).trim())),
        Err(e) => Some(format!("`unshare` cannot run: {e}; install util-linux")),
    }
}

/// A running step-ca, killed and reaped on drop (also when the test panics).
pub struct StepCa {
    child: std::process::Child,
    /// Its log (stdout and stderr), for failure messages.
    pub log: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
}

impl StepCa {
    /// Starts `step-ca --password-file PASSWORD CONFIG` (STEPPATH in `dir`, log in `dir`) and
    /// waits until `/health` answers `ok` over TLS for `dns_name` with `root` as the only trust
    /// anchor. `port` must be what `CONFIG`'s `address` listens on.
    pub fn start(
        dir: &Path,
        config: &Path,
        password: &Path,
        port: u16,
        dns_name: &str,
        root: &Path,
    ) -> Self {
        let log = dir.join("step-ca.log");
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        // urfave/cli (v1) stops reading flags at the first argument: flags first.
        let child = Command::new(step_ca_binary())
            .arg("--password-file")
            .arg(password)
            .arg(config)
            .env("STEPPATH", dir.join("steppath"))
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start step-ca");
        let mut ca = StepCa { child, log, port };
        for _ in 0..100 {
            if let Some(status) = ca.child.try_wait().expect("wait") {
                panic!("step-ca exited ({status}):\n{}", ca.log_text());
            }
            let health = ca.get(dns_name, root, "/health");
            if health.status.success() {
                let body = stdout(&health);
                assert!(body.contains(r#""status":"ok""#), "/health: {body}");
                return ca;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("step-ca did not answer /health in 10 s:\n{}", ca.log_text());
    }

    /// `curl` GET of `path` at `https://DNS_NAME:PORT` (resolved to 127.0.0.1), trusting only `root`.
    pub fn get(&self, dns_name: &str, root: &Path, path: &str) -> Output {
        run(Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
            .arg(root)
            .arg("--resolve")
            .arg(format!("{dns_name}:{}:127.0.0.1", self.port))
            .arg(format!("https://{dns_name}:{}{path}", self.port)))
    }

    /// What step-ca logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StepCa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback TCP port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}
