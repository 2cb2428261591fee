//! `kiwictl`: thin command-line front end over the `kiwi_tooling` library.
//!
//! It parses arguments, calls the library and prints; all logic lives in the library.

mod secrets;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use kiwi_signer::slug::{Slug, Tier};
use kiwi_tooling::{crl, githook, registry, staterepo};

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
    /// The customer registry of the platform repo (customers/*.yaml).
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
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
    /// Hooks shipped with kiwictl, for binding in a hooks file.
    Hook {
        #[command(subcommand)]
        command: HookCommand,
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
}

fn parse_slug(s: &str) -> Result<Slug, String> {
    Slug::parse(s).map_err(|e| e.to_string())
}
fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse()
        .map_err(|e: kiwi_signer::slug::TierError| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiwictl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
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
                println!(
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
                println!(
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
            };
            let path = registry::add(&dir, &entry)?;
            println!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Repo {
            command:
                RepoCommand::Init {
                    dir,
                    slug,
                    tier,
                    operator_age,
                    recovery_age,
                },
        } => {
            match staterepo::init(&dir, &slug, tier, &operator_age, recovery_age.as_deref())? {
                staterepo::Initialized::Created(paths) => {
                    println!("state repo for {slug} ({tier}) in {}", dir.display());
                    for p in paths {
                        println!("  created {}", p.display());
                    }
                }
                staterepo::Initialized::AlreadyThere => {
                    println!(
                        "{} already is the state repo for {slug} ({tier}); nothing to do",
                        dir.display()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Crl {
            command:
                CrlCommand::Check {
                    crl: crl_path,
                    root,
                    warn_days,
                    json,
                },
        } => {
            let report = crl::check_files(&crl_path, &root, warn_days, OffsetDateTime::now_utc())
                .map_err(|e| anyhow::anyhow!("cannot read the CRL or the root: {e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}: {}", crl_path.display(), report.message);
                if let (Some(n), Some(r)) = (&report.crl_number, report.revoked) {
                    println!("  CRL number {n}, {r} revoked certificate(s)");
                }
            }
            Ok(if report.verdict == crl::Verdict::Ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
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
    }
}
