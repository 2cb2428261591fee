//! `kiwictl`: thin command-line front end over the `kiwi_tooling` library.
//!
//! It parses arguments, calls the library and prints; all logic lives in the library.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use kiwi_signer::hooks::{EventData, EventKind, Hooks};
use kiwi_signer::slug::{Slug, Tier};
use kiwi_tooling::sops::agekeys::Identities;
use kiwi_tooling::{churn, crl, expiry, githook, onboard, precommit, registry, staterepo, stepca};

/// `println!` that ignores a closed stdout (`| head`): the operation's result is already durable
/// and reported by the exit status, so a reader going away must not turn success into a panic.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod secrets;
mod sopsfront;

const EXIT_HELP: &str = "Exit status: 0 success; 1 refused, failed, or a file failed, did not verify or does not conform (nothing was changed); 2 bad usage.";

/// KiwiStack online PKI and secrets tooling.
#[derive(Parser)]
#[command(name = "kiwictl", version, about, after_help = EXIT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// SOPS/age secrets in state repos (sops 3.x compatible).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// The sops 3.x command line (age keys only), for tools that run `sops`: `kiwictl sops
    /// --help`; kiwictl started under the name `sops` (a symlink) behaves the same.
    #[command(disable_help_flag = true)]
    Sops {
        /// sops's arguments.
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// The customer registry of the platform repo (customers/*.yaml).
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// A customer's intermediate CA: request (key + CSR) and install (after signing).
    Intermediate {
        #[command(subcommand)]
        command: IntermediateCommand,
    },
    /// A churning customer's hand-over (Mesh and Fleet tiers): the bundle and its check.
    Churn {
        #[command(subcommand)]
        command: ChurnCommand,
    },
    /// Core tenants' ACME provisioners on their cluster's shared step-ca sub-CA.
    Provisioner {
        #[command(subcommand)]
        command: ProvisionerCommand,
    },
    /// Customer state repos.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// Root CRL checks.
    Crl {
        #[command(subcommand)]
        command: CrlCommand,
    },
    /// Hooks shipped with kiwictl: for a hooks file (git-commit) and for git (pre-commit).
    Hook {
        #[command(subcommand)]
        command: HookCommand,
    },
    /// Print a shell completion script (`source <(kiwictl completions bash)`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: kiwi_signer::shell::Shell,
    },
    /// Write a man page for every command into DIR (`man -l DIR/kiwictl.1`); never overwrites.
    Man {
        /// The directory for the pages (created if missing), e.g. ~/.local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Check every customers/*.yaml; report every problem with file and field.
    Validate {
        /// The platform repo (holding customers/).
        dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write a new, valid customers/SLUG.yaml.
    Add {
        /// The platform repo (holding customers/).
        dir: PathBuf,
        #[arg(long, value_parser = parse_slug)]
        slug: Slug,
        #[arg(long, value_parser = parse_tier)]
        tier: Tier,
        /// ISO 3166-1 alpha-2 code, e.g. BE.
        #[arg(long)]
        jurisdiction: String,
        /// Turn the intelligence layer on (needs --intelligence-base).
        #[arg(long)]
        intelligence: bool,
        /// core-base tag, e.g. v1.4.2.
        #[arg(long, value_name = "TAG")]
        core_base: String,
        /// mesh-base tag (mesh and fleet tiers).
        #[arg(long, value_name = "TAG")]
        mesh_base: Option<String>,
        /// intelligence-base tag (with --intelligence).
        #[arg(long, value_name = "TAG")]
        intelligence_base: Option<String>,
        /// Core tier only: the Core cluster whose shared sub-CA holds the tenant's provisioner.
        #[arg(long, value_parser = parse_slug)]
        cluster: Option<Slug>,
    },
}

#[derive(clap::Args)]
struct Common {
    /// The policies folder (the tier's intermediate policy decides the key algorithm and
    /// what a certificate must carry).
    #[arg(long, value_name = "DIR", default_value = "policies")]
    policies: PathBuf,
    /// Hooks file binding local commands to this command's events (pre hooks can veto).
    #[arg(long, value_name = "FILE")]
    hooks: Option<PathBuf>,
}

impl Common {
    fn hooks(&self) -> anyhow::Result<Hooks> {
        Ok(match &self.hooks {
            Some(p) => Hooks::load(p)?,
            None => Hooks::none(),
        })
    }
}

#[derive(Subcommand)]
enum IntermediateCommand {
    /// Generate the intermediate key (stored only SOPS-encrypted in the repo's secrets/) and
    /// write its CSR for the transfer medium.
    Request {
        /// The customer's state repo.
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// Where to write the CSR (never overwritten).
        #[arg(long, value_name = "CSR")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// A renewal CSR: for the key already in the repo (default; also for re-rooting under the
    /// customer's own root at churn), or with --new-key for a fresh key, sealed in the repo
    /// like `request` seals one until `install --replace` takes it.
    #[command(alias = "csr")]
    Renew {
        /// The customer's state repo.
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// Where to write the CSR (never overwritten).
        #[arg(long, value_name = "CSR")]
        out: PathBuf,
        /// Generate a new key instead of reusing the current one.
        #[arg(long)]
        new_key: bool,
        /// age identity file (besides SOPS_AGE_KEY_FILE / SOPS_AGE_KEY).
        #[arg(long, value_name = "FILE")]
        identity: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Report the intermediates of state repos close to expiry. Exits 1 when one is expired,
    /// unreadable, or within --warn-days of its notAfter.
    Check {
        /// The state repos.
        #[arg(long, value_name = "DIR", required = true, num_args = 1..)]
        repo: Vec<PathBuf>,
        /// Days before notAfter that already count as due for renewal.
        #[arg(long, default_value_t = 90, value_name = "N")]
        warn_days: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also write the results as Prometheus metrics for node_exporter's textfile collector
        /// (replaced atomically).
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
    /// Print the step-ca configuration (ca.json) from chart values, for a step-ca run outside
    /// Kubernetes: mount paths replaced by files in --dir, the listen address by --address.
    LocalConfig {
        /// Chart values holding inject.config.files.ca.json (values/smallstep.yaml, or the
        /// platform repo's core-shared/CLUSTER/values/smallstep-config.yaml).
        #[arg(long, value_name = "FILE")]
        values: PathBuf,
        /// Where root_ca.crt, intermediate_ca.crt, intermediate_ca_key and db/ will be.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The listen address, e.g. 127.0.0.1:9443.
        #[arg(long, value_name = "HOST:PORT")]
        address: String,
    },
    /// Check a signed certificate and install it where step-ca's Helm chart reads it.
    Install {
        /// The customer's state repo.
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// The signed intermediate certificate (PEM or DER).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The MSP root certificate.
        #[arg(long, value_name = "ROOT.pem")]
        root: PathBuf,
        /// The root's current CRL: the certificate must not be on it.
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
        /// age identity file (besides SOPS_AGE_KEY_FILE / SOPS_AGE_KEY, as sops reads them).
        #[arg(long, value_name = "FILE")]
        identity: Vec<PathBuf>,
        /// Replace the installed intermediate (renewal); prints the old serial to revoke as
        /// superseded. Raises intermediate_renewed instead of intermediate_installed.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum ChurnCommand {
    /// Build the hand-over bundle: the state repo re-encrypted to the customer only (new data
    /// keys), the re-rooted chain installed, the MSP CRL, MANIFEST and HANDOVER.md. Refused for
    /// the Core tier. Decrypts with the operator's key (SOPS_AGE_KEY_FILE or --identity).
    Export {
        /// The customer's state repo.
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// The customer's age recipient: the key their cluster will hold, then optionally their
        /// recovery key (one or two).
        #[arg(long, value_name = "RECIPIENT", required = true)]
        customer_age: Vec<String>,
        /// The customer's root certificate.
        #[arg(long, value_name = "CUSTOMER_ROOT.pem")]
        root: PathBuf,
        /// The intermediate re-signed under the customer's root (`kiwi-signer reroot`).
        #[arg(long, value_name = "REROOTED.pem")]
        cert: PathBuf,
        /// The MSP CRL revoking the MSP-issued intermediate (`kiwi-signer handover`).
        #[arg(long, value_name = "CRL")]
        msp_crl: PathBuf,
        /// The bundle directory (must not exist).
        #[arg(long, value_name = "BUNDLE_DIR")]
        out: PathBuf,
        /// Keep the repo's git history (a risk: it holds ciphertext the MSP can decrypt).
        #[arg(long)]
        keep_history: bool,
        /// age identity file (besides SOPS_AGE_KEY_FILE / SOPS_AGE_KEY).
        #[arg(long, value_name = "FILE")]
        identity: Vec<PathBuf>,
        /// Hooks file (event handed_over).
        #[arg(long, value_name = "FILE")]
        hooks: Option<PathBuf>,
    },
    /// The customer's check of a bundle with their own age key only. Exits 0 only when every
    /// condition holds; names each failure otherwise.
    Verify {
        /// The bundle directory.
        bundle: PathBuf,
        /// The customer's age identity file (environment keys are not used).
        #[arg(long, value_name = "FILE", required = true)]
        identity: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ProvisionerCommand {
    /// Record a Core tenant's ACME provisioner (named by its slug, with a template that refuses
    /// any name outside SLUG.od.kiwistack.io) in its state repo.
    Add {
        /// The Core tenant's state repo.
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// Hooks file binding local commands to this command's events (pre hooks can veto).
        #[arg(long, value_name = "FILE")]
        hooks: Option<PathBuf>,
    },
    /// Write the cluster's shared step-ca configuration with every tenant's provisioner into
    /// the shared sub-CA's repo (core-shared/CLUSTER/values/smallstep-config.yaml, regenerated
    /// each time; the repo is made by `repo init --shared`, whose pinned root it uses).
    Gather {
        /// The platform repo.
        #[arg(long, value_name = "DIR")]
        platform: PathBuf,
        /// The Core cluster's name (its shared CA answers at ca.CLUSTER.od.kiwistack.io).
        #[arg(long, value_parser = parse_slug)]
        cluster: Slug,
        /// Every Core tenant's state repo on this cluster (repeat the option).
        #[arg(long, value_name = "DIR", required = true)]
        repo: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Lay down the secrets part of a state repo: secrets/.sops.yaml and the seed's folders.
    Init {
        /// The state repo (absent, empty, or already this customer's).
        dir: PathBuf,
        #[arg(long, value_parser = parse_slug)]
        slug: Slug,
        #[arg(long, value_parser = parse_tier)]
        tier: Tier,
        /// The operator's age recipient (Argo CD's key).
        #[arg(long, value_name = "RECIPIENT")]
        operator_age: String,
        /// The customer's recovery age recipient, if they keep one.
        #[arg(long, value_name = "RECIPIENT")]
        recovery_age: Option<String>,
        /// The MSP root certificate (root.pem from the signer): its SHA-256 is pinned in
        /// .kiwi/repo.yaml and `intermediate install` accepts no other root.
        #[arg(long, value_name = "ROOT.pem")]
        root: PathBuf,
        /// A Core cluster's shared sub-CA (the platform repo's core-shared/CLUSTER), not a
        /// customer: --slug names the cluster, --tier is core. `intermediate request/install`
        /// then work on it under policies/intermediate-core-shared.yaml.
        #[arg(long)]
        shared: bool,
    },
}

#[derive(Subcommand)]
enum CrlCommand {
    /// Check a CRL against the root: signature, issuer, days until nextUpdate. Exits 1 when
    /// it is invalid, expired, or due within --warn-days.
    Check {
        /// The CRL (PEM or DER).
        #[arg(long, value_name = "FILE")]
        crl: PathBuf,
        /// The root certificate (PEM or DER).
        #[arg(long, value_name = "ROOT.pem")]
        root: PathBuf,
        /// Days before nextUpdate that already count as due.
        #[arg(long, default_value_t = 45, value_name = "N")]
        warn_days: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also write the result as Prometheus metrics for node_exporter's textfile collector
        /// (replaced atomically; written even when the CRL is invalid or unreadable).
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HookCommand {
    /// Commit the files an event names in a state repo (reads the event JSON on stdin).
    GitCommit {
        /// The repository (default: the event's files.repo).
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// git's pre-commit hook: refuses staged plaintext where a secret belongs (a file named
    /// `*.sops.*`, or covered by a .sops.yaml creation rule, without valid SOPS metadata).
    /// Reads the index, not the work tree. Install as `.git/hooks/pre-commit` holding
    /// `#!/bin/sh` and `exec kiwictl hook pre-commit`, or through the pre-commit framework
    /// (this repository's .pre-commit-hooks.yaml, id `kiwictl-no-plaintext`).
    PreCommit {
        /// Check only these staged files (the pre-commit framework passes them); default:
        /// every staged file.
        files: Vec<PathBuf>,
    },
}

fn parse_slug(s: &str) -> Result<Slug, String> {
    Slug::parse(s).map_err(|e| e.to_string())
}
fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse()
        .map_err(|e: kiwi_signer::slug::TierError| e.to_string())
}

const TOOL: &str = "kiwictl";

fn add_file(data: &mut EventData, role: &str, path: &std::path::Path) {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    data.files.entry(role.into()).or_default().push(abs);
}

/// An input file's bytes.
fn read(p: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
}

/// The event data of an operation on the state repo `repo` writing `out`: the customer (when
/// the repo's marker is readable) and both paths.
fn repo_event(repo: &std::path::Path, out: &std::path::Path) -> EventData {
    let mut data = EventData::default();
    if let Ok(info) = staterepo::open(repo) {
        data.slug = Some(info.slug.to_string());
        data.tier = Some(info.tier.to_string());
    }
    add_file(&mut data, "repo", repo);
    add_file(&mut data, "out", out);
    data
}

/// Runs post hooks; their failures are reported and change nothing.
fn post(hooks: &Hooks, event: EventKind, data: &EventData) {
    for f in hooks.run_post(TOOL, event, data) {
        eprintln!("kiwictl: warning: {f}");
    }
}

fn main() -> ExitCode {
    if sopsfront::invoked_as_sops() {
        return sopsfront::main(std::env::args_os().collect());
    }
    let cli = Cli::parse();
    if let Command::Sops { args } = cli.command {
        return sopsfront::main(std::iter::once("sops".into()).chain(args).collect());
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiwictl: error: {}", message(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined with `: `, each cause once: a library error that already
/// quotes its cause (`PATH: OS error`) is not followed by that cause again.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sops { .. } => unreachable!("the sops front is run by main"),
        Command::Secrets(c) => {
            let code = secrets::run(c)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Command::Registry {
            command: RegistryCommand::Validate { dir, json },
        } => {
            let report = registry::validate(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read {}: {e}; pass the platform repo that holds customers/",
                    dir.join(registry::CUSTOMERS).display()
                )
            })?;
            if json {
                let problems: Vec<_> = report
                    .problems
                    .iter()
                    .map(|p| serde_json::json!({"file": p.file, "field": p.field, "message": p.message}))
                    .collect();
                out!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "valid": report.entries.keys().collect::<Vec<_>>(),
                        "problems": problems,
                    }))?
                );
            } else {
                for p in &report.problems {
                    eprintln!("{p}");
                }
                out!(
                    "{} valid entries, {} problems",
                    report.entries.len(),
                    report.problems.len()
                );
            }
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Registry {
            command:
                RegistryCommand::Add {
                    dir,
                    slug,
                    tier,
                    jurisdiction,
                    intelligence,
                    core_base,
                    mesh_base,
                    intelligence_base,
                    cluster,
                },
        } => {
            let mut base_versions = BTreeMap::from([("core-base".to_string(), core_base)]);
            if let Some(m) = mesh_base {
                base_versions.insert("mesh-base".into(), m);
            }
            if let Some(i) = intelligence_base {
                base_versions.insert("intelligence-base".into(), i);
            }
            let entry = registry::Entry {
                slug,
                tier,
                jurisdiction,
                intelligence,
                base_versions,
                cluster,
            };
            let path = registry::add(&dir, &entry)?;
            out!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Provisioner {
            command: ProvisionerCommand::Add { repo, hooks },
        } => {
            let hooks = match &hooks {
                Some(p) => Hooks::load(p)?,
                None => Hooks::none(),
            };
            let info = staterepo::open(&repo)?;
            let mut data = EventData {
                slug: Some(info.slug.to_string()),
                tier: Some(info.tier.to_string()),
                ..EventData::default()
            };
            add_file(&mut data, "repo", &repo);
            hooks.run_pre(TOOL, EventKind::ProvisionerAdded, &data)?;
            let done = stepca::add_provisioner(&repo)?;
            out!(
                "ACME provisioner `{}` recorded (names under {} only)",
                done.slug,
                stepca::tenant_domain(&done.slug)
            );
            out!("  wrote {}", done.file.display());
            out!("  (run `kiwictl provisioner gather` for the cluster to put it on the shared CA)");
            add_file(&mut data, "written", &done.file);
            post(&hooks, EventKind::ProvisionerAdded, &data);
            Ok(ExitCode::SUCCESS)
        }
        Command::Provisioner {
            command:
                ProvisionerCommand::Gather {
                    platform,
                    cluster,
                    repo,
                },
        } => {
            let done = stepca::gather(&platform, &cluster, &repo)?;
            let names: Vec<&str> = done.tenants.iter().map(|s| s.as_str()).collect();
            out!(
                "shared step-ca of {cluster}: {} provisioner(s): {}",
                names.len(),
                names.join(", ")
            );
            out!("  wrote {}", done.file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Intermediate {
            command: IntermediateCommand::Request { repo, out, common },
        } => {
            let hooks = common.hooks()?;
            if let Ok(info) = staterepo::open(&repo) {
                onboard::refuse_core(&repo, &info)?;
            }
            let mut data = repo_event(&repo, &out);
            hooks.run_pre(TOOL, EventKind::IntermediateRequested, &data)?;
            let r = onboard::request(&repo, &common.policies, &out)?;
            out!(
                "intermediate requested for {} ({} tier): {} key",
                r.info.slug,
                r.info.tier,
                r.algorithm
            );
            out!("  key (SOPS-encrypted)  {}", r.key_file.display());
            out!("  CSR                   {}", r.csr.display());
            out!("  CSR SHA-256           {}", r.csr_sha256.for_reading());
            out!("  (send the fingerprint to the ceremony out of band; the witness compares it)");
            out!("  sign it: {}", onboard::sign_command(&r.info, &r.csr));
            data.sha256.insert("csr".into(), r.csr_sha256.hex());
            add_file(&mut data, "written", &r.key_file);
            add_file(&mut data, "written", &r.csr);
            post(&hooks, EventKind::IntermediateRequested, &data);
            Ok(ExitCode::SUCCESS)
        }
        Command::Intermediate {
            command:
                IntermediateCommand::LocalConfig {
                    values,
                    dir,
                    address,
                },
        } => {
            let config = stepca::local_config(&values, &dir, &address)?;
            out!("{}", serde_json::to_string_pretty(&config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Intermediate {
            command:
                IntermediateCommand::Renew {
                    repo,
                    out,
                    new_key,
                    identity,
                    common,
                },
        } => {
            let ids = Identities::from_env(&identity)?;
            let r = onboard::renew(&repo, &common.policies, &ids, &out, new_key)?;
            let which = if new_key { "a new" } else { "the existing" };
            out!(
                "renewal CSR for {which} {} key of {}: {}",
                r.algorithm,
                r.info.slug,
                r.csr.display()
            );
            if new_key {
                out!(
                    "  new key (SOPS-encrypted, pending)  {}",
                    r.key_file.display()
                );
            }
            out!("  CSR SHA-256  {}", r.csr_sha256.for_reading());
            out!("  (sign it at the ceremony, then `kiwictl intermediate install --replace`)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Intermediate {
            command:
                IntermediateCommand::Check {
                    repo,
                    warn_days,
                    json,
                    prometheus,
                },
        } => {
            let now = OffsetDateTime::now_utc();
            let checks: Vec<_> = repo
                .iter()
                .map(|r| expiry::check(r, warn_days, now))
                .collect();
            if let Some(p) = &prometheus {
                kiwi_tooling::metrics::write(p, &expiry::gauges(&checks, now))?;
            }
            if json {
                out!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                for c in &checks {
                    out!(
                        "{} ({}): {}",
                        c.repo.display(),
                        c.slug.as_deref().unwrap_or("?"),
                        c.message
                    );
                }
            }
            Ok(if checks.iter().all(|c| c.verdict == crl::Verdict::Ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Intermediate {
            command:
                IntermediateCommand::Install {
                    repo,
                    cert,
                    root,
                    crl: crl_file,
                    identity,
                    replace,
                    common,
                },
        } => {
            let event = if replace {
                EventKind::IntermediateRenewed
            } else {
                EventKind::IntermediateInstalled
            };
            let hooks = common.hooks()?;
            let cert_bytes = read(&cert)?;
            let root_bytes = read(&root)?;
            let crl_bytes = crl_file.as_ref().map(read).transpose()?;
            let info = staterepo::open(&repo)?;
            let mut data = EventData {
                slug: Some(info.slug.to_string()),
                tier: Some(info.tier.to_string()),
                ..EventData::default()
            };
            add_file(&mut data, "repo", &repo);
            add_file(&mut data, "cert", &cert);
            hooks.run_pre(TOOL, event, &data)?;
            let ids = Identities::from_env(&identity)?;
            let done = onboard::install(
                &onboard::InstallInput {
                    repo: &repo,
                    policies_dir: &common.policies,
                    cert: &cert_bytes,
                    cert_origin: &cert.display().to_string(),
                    root: &root_bytes,
                    crl: crl_bytes.as_deref(),
                    replace,
                },
                &ids,
                OffsetDateTime::now_utc(),
            )?;
            out!(
                "intermediate {} installed for {} (valid until {})",
                done.cert.serial,
                done.info.slug,
                done.cert.not_after
            );
            for w in &done.written {
                out!("  wrote {}", w.display());
                add_file(&mut data, "written", w);
            }
            data.serial = Some(done.cert.serial.clone());
            data.sha256
                .insert("certificate".into(), done.cert.sha256.hex());
            data.sha256
                .insert("root".into(), done.cert.root_sha256.hex());
            if let Some(old) = &done.replaced {
                out!("  replaced {old}: revoke it as superseded at the next ceremony");
                out!("    kiwi-signer revoke --serial {old} --reason superseded");
                data.details.insert("replaced_serial".into(), old.clone());
            }
            post(&hooks, event, &data);
            Ok(ExitCode::SUCCESS)
        }
        Command::Churn {
            command:
                ChurnCommand::Export {
                    repo,
                    customer_age,
                    root,
                    cert,
                    msp_crl,
                    out,
                    keep_history,
                    identity,
                    hooks,
                },
        } => {
            let hooks = match &hooks {
                Some(p) => Hooks::load(p)?,
                None => Hooks::none(),
            };
            let (root_bytes, cert_bytes, crl_bytes) = (read(&root)?, read(&cert)?, read(&msp_crl)?);
            let mut data = repo_event(&repo, &out);
            hooks.run_pre(TOOL, EventKind::HandedOver, &data)?;
            let ids = Identities::from_env(&identity)?;
            let done = churn::export(
                &churn::ExportInput {
                    repo: &repo,
                    customer_age: &customer_age,
                    root: &root_bytes,
                    cert: &cert_bytes,
                    msp_crl: &crl_bytes,
                    out: &out,
                    keep_history,
                },
                &ids,
                OffsetDateTime::now_utc(),
            )?;
            out!(
                "hand-over bundle for {} ({} tier) in {}",
                done.info.slug,
                done.info.tier,
                done.out.display()
            );
            out!(
                "  {} SOPS file(s) re-encrypted to {} only, new data keys",
                done.resealed.len(),
                customer_age.join(", ")
            );
            out!(
                "  intermediate {} (re-rooted; the MSP-issued {} is revoked in the MSP CRL)",
                done.new_serial,
                done.old_serial
            );
            out!(
                "  customer root SHA-256  {}",
                done.customer_root_sha256.hex()
            );
            out!("  MANIFEST SHA-256       {}", done.manifest_sha256.hex());
            if done.history_kept {
                eprintln!(
                    "kiwictl: warning: --keep-history: {}",
                    churn::export::HISTORY_RISK
                );
            }
            data.serial = Some(done.new_serial.clone());
            data.details
                .insert("previous_serial".into(), done.old_serial.clone());
            data.sha256
                .insert("customer_root".into(), done.customer_root_sha256.hex());
            data.sha256
                .insert("manifest".into(), done.manifest_sha256.hex());
            add_file(&mut data, "written", &done.out);
            post(&hooks, EventKind::HandedOver, &data);
            Ok(ExitCode::SUCCESS)
        }
        Command::Churn {
            command:
                ChurnCommand::Verify {
                    bundle,
                    identity,
                    json,
                },
        } => {
            let mut ids = Identities::empty();
            for i in &identity {
                ids.add_file(i)?;
            }
            let v = churn::verify(&bundle, &ids, OffsetDateTime::now_utc());
            if json {
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else if v.ok {
                out!(
                    "{}: the hand-over bundle of {} holds: manifest, {} SOPS file(s) yours only, chain, key, MSP CRL",
                    bundle.display(),
                    v.slug.as_deref().unwrap_or("?"),
                    v.sops_files.len()
                );
            } else {
                for f in &v.failures {
                    eprintln!("kiwictl: FAILED {f}");
                }
                eprintln!(
                    "kiwictl: {}: {} check(s) failed; do not use this bundle, ask the MSP for a new one",
                    bundle.display(),
                    v.failures.len()
                );
            }
            Ok(if v.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Repo {
            command:
                RepoCommand::Init {
                    dir,
                    slug,
                    tier,
                    operator_age,
                    recovery_age,
                    root,
                    shared,
                },
        } => {
            let pin = staterepo::read_root(&root)?;
            let recovery = recovery_age.as_deref();
            let outcome = if shared {
                if tier != Tier::Core {
                    anyhow::bail!("--shared with --tier {tier}: only a Core cluster has a shared sub-CA; pass --tier core and the cluster as --slug");
                }
                staterepo::init_shared(&dir, &slug, &operator_age, recovery, &pin)?
            } else {
                staterepo::init(&dir, &slug, tier, &operator_age, recovery, &pin)?
            };
            let slug = if shared {
                format!("the shared sub-CA of core cluster {slug}")
            } else {
                slug.to_string()
            };
            match outcome {
                staterepo::Initialized::Created(paths) => {
                    out!("state repo for {slug} ({tier}) in {}", dir.display());
                    for p in paths {
                        out!("  created {}", p.display());
                    }
                }
                staterepo::Initialized::AlreadyThere => {
                    out!(
                        "{} already is the state repo for {slug} ({tier}); nothing to do",
                        dir.display()
                    );
                }
                staterepo::Initialized::Pinned => {
                    out!(
                        "{} is the state repo for {slug} ({tier}); its marker now pins the MSP root",
                        dir.display()
                    );
                }
            }
            out!(
                "  MSP root SHA-256 (check it against the root ceremony's record)\n    {}",
                pin.for_reading()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Crl {
            command:
                CrlCommand::Check {
                    crl: crl_path,
                    root,
                    warn_days,
                    json,
                    prometheus,
                },
        } => {
            let now = OffsetDateTime::now_utc();
            let report = crl::check_files(&crl_path, &root, warn_days, now);
            if let Some(p) = &prometheus {
                let label = crl_path.display().to_string();
                kiwi_tooling::metrics::write(p, &report.gauges(&label, now))?;
            }
            if json {
                out!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                out!("{}: {}", crl_path.display(), report.message);
                if let (Some(n), Some(r)) = (&report.crl_number, report.revoked) {
                    out!("  CRL number {n}, {r} revoked certificate(s)");
                }
            }
            Ok(if report.verdict == crl::Verdict::Ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            kiwi_signer::shell::completions(&mut Cli::command(), shell, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => {
            use clap::CommandFactory as _;
            let pages = kiwi_signer::shell::write_man_pages(Cli::command(), &out)?;
            out!("wrote {} man pages into {}", pages.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Hook {
            command: HookCommand::GitCommit { repo },
        } => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            match githook::commit(&input, repo.as_deref())? {
                githook::Committed::Commit(subject) => eprintln!("committed: {subject}"),
                githook::Committed::NothingToCommit => eprintln!("nothing to commit"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Hook {
            command: HookCommand::PreCommit { files },
        } => {
            let refusals = precommit::check_staged(std::path::Path::new("."), &files)?;
            for r in &refusals {
                eprintln!("kiwictl: refused: {}: {}", r.path, r.reason);
            }
            if refusals.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::bail!(
                "{} staged file(s) hold plaintext where a secret belongs; nothing was committed: \
                 unstage each (`git restore --staged FILE`), encrypt it \
                 (`kiwictl secrets encrypt --in-place FILE`) and stage it again",
                refusals.len()
            )
        }
    }
}
