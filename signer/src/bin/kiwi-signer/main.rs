//! `kiwi-signer`: thin command-line front end over the `kiwi_signer` library.
//!
//! It parses arguments, resolves them into typed requests, supplies terminal prompts through
//! the library's `Callbacks`, and prints results. All logic lives in the library.

mod prompt;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use kiwi_signer::backend::pkcs11_config::Pkcs11Config;
use kiwi_signer::backend::yubikey_config::YubikeyConfig;
use kiwi_signer::backend::{BackendConfig, BackendKind};
use kiwi_signer::ca::{self, Ca};
use kiwi_signer::ceremony::crl::Crl;
use kiwi_signer::ceremony::handover::Handover;
use kiwi_signer::ceremony::init::BackendSpec;
use kiwi_signer::ceremony::renew::Renew;
use kiwi_signer::ceremony::reroot::Reroot;
use kiwi_signer::ceremony::revoke::Revoke;
use kiwi_signer::ceremony::sign::SignRequest;
use kiwi_signer::ceremony::{self, Ceremony, ExpectedHead, Operation, Outcome, Witness};
use kiwi_signer::hooks::Hooks;
use kiwi_signer::ledger::{Reason, Recorded};
use kiwi_signer::slug::{Slug, Tier};
use kiwi_signer::x509::Serial;

/// `println!` that ignores a closed stdout (`| head`): the operation's result is already durable
/// and reported by the exit status, so a reader going away must not turn success into a panic.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

const EXIT_HELP: &str = "Exit status: 0 success; 1 refused or failed (nothing was written and the ledger is unchanged, unless the message says the operation was recorded: then `export` writes its output); 2 bad usage.
Secrets: the passphrase/PIN comes from --pin-file or the terminal, never from the environment.";

/// KiwiStack's air-gapped root signer.
#[derive(Parser)]
#[command(name = "kiwi-signer", version, about, after_help = EXIT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Secrets {
    /// File holding the passphrase or PIN (first line), mode 0600 or stricter (a file group or
    /// others can read is refused). Without it, it is asked on the terminal.
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
    /// YubiKey: file holding the management key (48 hex digits), mode 0600 or stricter; needed
    /// to generate the key and to store the ledger head on the device, unless the device keeps
    /// a PIN-protected management key. Without it, it is asked on the terminal. It is never
    /// stored.
    #[arg(long, value_name = "FILE")]
    mgm_key_file: Option<PathBuf>,
}

impl Secrets {
    fn terminal(self, yes: bool) -> prompt::Terminal {
        prompt::Terminal::new(self.pin_file, yes).with_mgm_key_file(self.mgm_key_file)
    }
}

/// Where a PKCS#11 root key goes (`--backend pkcs11`).
#[derive(clap::Args)]
struct Pkcs11Args {
    /// PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Label of the token that generates and holds the key.
    #[arg(long, value_name = "LABEL")]
    token_label: Option<String>,
    /// Label for the new key pair.
    #[arg(long, value_name = "LABEL")]
    key_label: Option<String>,
    /// RFC 7512 URI instead of the flags: pkcs11:token=T;object=K?module-path=M
    #[arg(long, value_name = "URI", conflicts_with_all = ["token_label", "key_label"])]
    uri: Option<String>,
    /// `--backend yubikey`: the device's serial number (recorded; any other device is refused).
    #[arg(long, value_name = "N")]
    serial: Option<u32>,
    /// `--backend yubikey`: instead of generating the key on one device, generate it in memory,
    /// import it into each of these devices (two or more: the backups), check each, zeroize it.
    #[arg(long, value_name = "SERIAL", num_args = 2.., conflicts_with = "serial")]
    import_to: Vec<u32>,
    /// `--backend yubikey`: the PIV slot (9c by default; 82 to 95 allowed).
    #[arg(long, value_name = "SLOT", default_value = "9c")]
    slot: String,
}

impl Pkcs11Args {
    fn spec(self, backend: BackendKind) -> anyhow::Result<BackendSpec> {
        let given = self.module.is_some()
            || self.token_label.is_some()
            || self.key_label.is_some()
            || self.uri.is_some();
        let yk_given = self.serial.is_some() || !self.import_to.is_empty();
        match backend {
            _ if given && backend != BackendKind::Pkcs11 => {
                anyhow::bail!("--module/--token-label/--key-label/--uri are for --backend pkcs11")
            }
            _ if yk_given && backend != BackendKind::Yubikey => {
                anyhow::bail!("--serial/--import-to are for --backend yubikey")
            }
            BackendKind::Soft => Ok(BackendSpec::soft()),
            BackendKind::Pkcs11 => {
                let cfg = match self.uri {
                    Some(uri) => {
                        Pkcs11Config::from_uri(&uri, self.module).map_err(anyhow::Error::msg)?
                    }
                    None => Pkcs11Config {
                        module: self.module.ok_or_else(|| {
                            anyhow::anyhow!("--backend pkcs11 needs --module PATH (or --uri)")
                        })?,
                        token_label: self.token_label.ok_or_else(|| {
                            anyhow::anyhow!("--backend pkcs11 needs --token-label")
                        })?,
                        key_label: self
                            .key_label
                            .ok_or_else(|| anyhow::anyhow!("--backend pkcs11 needs --key-label"))?,
                    },
                };
                Ok(BackendSpec::generate(BackendConfig::Pkcs11(cfg)))
            }
            BackendKind::Yubikey => {
                let slot = kiwi_signer::backend::yubikey_config::parse_slot(&self.slot)
                    .map_err(anyhow::Error::msg)?;
                let import = !self.import_to.is_empty();
                let (serial, backups) = match self.import_to.split_first() {
                    Some((first, rest)) => (*first, rest.to_vec()),
                    None => (
                        self.serial.ok_or_else(|| {
                            anyhow::anyhow!(
                                "--backend yubikey needs --serial N (the device's serial number), or --import-to S1 S2..."
                            )
                        })?,
                        Vec::new(),
                    ),
                };
                let config = BackendConfig::Yubikey(YubikeyConfig {
                    serial,
                    slot: format!("{slot:02x}"),
                    backups,
                });
                Ok(if import {
                    BackendSpec::import(config)
                } else {
                    BackendSpec::generate(config)
                })
            }
        }
    }
}

/// The air-gap preflight every command that uses the root key runs first.
#[derive(clap::Args)]
struct AirGapArgs {
    /// Use a hardware root key although the air-gap preflight fails (an interface up, a
    /// route, a radio): the failed checks are printed and recorded in the ledger entry, so
    /// an auditor sees the root was used on a connected machine. Without it such a run is
    /// refused before any PIN is asked. The soft backend only warns.
    #[arg(long)]
    allow_network: bool,
}

#[derive(clap::Args)]
struct HookArgs {
    /// Hooks file binding local commands to this command's events (pre hooks can veto).
    #[arg(long, value_name = "FILE")]
    hooks: Option<PathBuf>,
}

impl HookArgs {
    fn load(&self) -> anyhow::Result<Hooks> {
        Ok(match &self.hooks {
            Some(p) => Hooks::load(p)?,
            None => Hooks::none(),
        })
    }
}

/// The witness's ledger head, checked before anything is signed (the rollback check).
#[derive(clap::Args)]
struct WitnessArgs {
    /// The ledger head the witness wrote down after the previous command: its 64 hex digits, or
    /// its first four PGP words. Refused, naming both heads, when the ledger's head differs.
    #[arg(long, value_name = "HEAD", value_parser = parse_head)]
    expect_head: Option<ExpectedHead>,
    /// A file on the transfer medium holding the witness's ledger head: checked like
    /// --expect-head, and rewritten with the new head after success.
    #[arg(long, value_name = "FILE")]
    head_file: Option<PathBuf>,
}

impl WitnessArgs {
    fn witness(self) -> Witness {
        Witness {
            expect: self.expect_head,
            head_file: self.head_file,
        }
    }
}

/// What every command that changes a CA takes besides its own arguments.
#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    hooks: HookArgs,
    #[command(flatten)]
    air_gap: AirGapArgs,
    #[command(flatten)]
    witness: WitnessArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new root CA in an empty directory.
    Init {
        /// The CA directory (absent or empty).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Where the root key lives: soft (age-encrypted file, for rehearsals), yubikey, pkcs11.
        #[arg(long, value_parser = parse_backend)]
        backend: BackendKind,
        /// The root policy, e.g. policies/root.yaml (intermediate policies are read beside it),
        /// or policies/customer-root.yaml for a customer-owned root (needs --org).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// A customer-owned root's organization (its subject: O=ORG, CN=ORG Root CA); only with
        /// a `kind: customer_root` policy.
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        #[command(flatten)]
        pkcs11: Pkcs11Args,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        hooks: HookArgs,
        #[command(flatten)]
        air_gap: AirGapArgs,
        /// Write the new ledger head to this file (on the transfer medium) for the witness.
        #[arg(long, value_name = "FILE")]
        head_file: Option<PathBuf>,
    },
    /// Issue an intermediate CA certificate for a customer's CSR.
    Sign {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The CSR, PEM or DER.
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// The customer's slug (RFC 1123 label).
        #[arg(long, value_parser = parse_slug)]
        slug: Slug,
        /// The customer's tier.
        #[arg(long, value_parser = parse_tier)]
        tier: Tier,
        /// Output certificate (PEM; DER if the name ends in .der). Never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Validity in days (default: the tier policy's default_days).
        #[arg(long)]
        days: Option<u32>,
        /// A Core cluster's shared sub-CA (with --tier core; --slug names the cluster): signed
        /// under intermediate-core-shared.yaml, whose name constraints cover every tenant.
        #[arg(long)]
        shared: bool,
        /// Do not ask for confirmation (the summary is still printed).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Revoke an intermediate and issue a new CRL.
    Revoke {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Serial of the intermediate, in hex (as `status` prints it).
        #[arg(long, value_parser = parse_serial)]
        serial: Serial,
        /// keyCompromise, cACompromise, superseded, cessationOfOperation or affiliationChanged.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
        /// Output CRL (PEM; DER if the name ends in .der). Never overwritten.
        #[arg(long, value_name = "CRLFILE")]
        out: PathBuf,
        /// Do not ask for confirmation (the summary is still printed).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Re-issue the CRL (run at every scheduled ceremony, before nextUpdate).
    Crl {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Output CRL (PEM; DER if the name ends in .der). Never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Re-sign an intermediate the MSP root issued under this customer-owned root (churn
    /// hand-over): same key, subject and SKI, so its leaves chain to this root.
    Reroot {
        /// The customer's CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The intermediate certificate the MSP issued (PEM or DER).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The MSP root certificate that issued it.
        #[arg(long, value_name = "FILE")]
        msp_root: PathBuf,
        /// The MSP root's current CRL (a compromise revocation of the certificate refuses).
        #[arg(long, value_name = "CRLFILE")]
        msp_crl: PathBuf,
        /// A DNS name of the customer's own to add to the permitted subtrees (repeatable).
        #[arg(long, value_name = "NAME")]
        permit_dns: Vec<String>,
        /// Output certificate (PEM; DER if the name ends in .der). Never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Do not ask for confirmation (the summary is still printed).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        run: RunArgs,
    },
    /// On a customer-owned root: issue a replacement, for a NEW key, of an intermediate this
    /// root re-rooted or renewed (same subject, name constraints and tier marker); revoke the
    /// old one afterwards.
    Renew {
        /// The customer's CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Serial of the re-rooted or renewed intermediate to replace, in hex (as `status`
        /// prints it).
        #[arg(long, value_parser = parse_serial)]
        serial: Serial,
        /// The CSR for the new key (PEM or DER), e.g. from `kiwictl intermediate renew --new-key`.
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// Output certificate (PEM; DER if the name ends in .der). Never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Validity in days (default: as long as the replaced certificate's, within the root's).
        #[arg(long)]
        days: Option<u32>,
        /// Do not ask for confirmation (the summary is still printed).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        run: RunArgs,
    },
    /// MSP side of a churn hand-over: revoke the intermediate as affiliationChanged, record
    /// the customer's new root, issue the CRL. Only after the customer trusts their new root.
    Handover {
        /// The MSP CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Serial of the intermediate, in hex (as `status` prints it).
        #[arg(long, value_parser = parse_serial)]
        serial: Serial,
        /// The customer's new root certificate (its SHA-256 is recorded in the ledger).
        #[arg(long, value_name = "FILE")]
        new_root: PathBuf,
        /// Output CRL (PEM; DER if the name ends in .der). Never overwritten.
        #[arg(long, value_name = "CRLFILE")]
        out: PathBuf,
        /// Do not ask for confirmation (the summary is still printed).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show issued and revoked intermediates, the CRL number and when the next CRL is due.
    Status {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// List unrevoked intermediates expiring within this many days.
        #[arg(long, value_name = "N", default_value_t = ca::DEFAULT_WARN_DAYS)]
        warn_days: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Air-gap preflight: no interface up but loopback, no route but loopback's (IPv4 and IPv6),
    /// every radio blocked (rfkill, Bluetooth), a plausible clock (against the CA's ledger when
    /// --ca is given). Run it before any key comes out of the safe.
    Preflight {
        /// The CA directory (its newest ledger entry bounds the clock).
        #[arg(long, value_name = "DIR")]
        ca: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Hooks shipped with the signer, for binding in a hooks file (they read the event JSON on
    /// standard input and stay local: files and the terminal only).
    Hook {
        #[command(subcommand)]
        command: HookCommand,
    },
    /// Print a shell completion script (`source <(kiwi-signer completions bash)`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: kiwi_signer::shell::Shell,
    },
    /// Write a man page for every command into DIR (`man -l DIR/kiwi-signer.1`); never overwrites.
    Man {
        /// The directory for the pages (created if missing), e.g. ~/.local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a certificate or CRL the ledger records again (after a crash, or a lost copy).
    Export {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The certificate's serial, in hex (as `status` prints it).
        #[arg(long, value_parser = parse_serial, required_unless_present = "crl_number", conflicts_with = "crl_number")]
        serial: Option<Serial>,
        /// The CRL's number.
        #[arg(long, value_name = "N")]
        crl_number: Option<u64>,
        /// Output file (PEM; DER if the name ends in .der). Never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Scripted ceremonies: a ceremony file planned, run step by step with the key opened once,
    /// and a transcript the witness signs and anyone can verify (see ceremony/README.md).
    Ceremony {
        #[command(subcommand)]
        command: CeremonyCommand,
    },
    /// Ledger commands.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Subcommand)]
enum HookCommand {
    /// Copy the certificates and CRLs the event wrote onto the transfer medium (never the key,
    /// the ledger or the config; never overwriting).
    CopyTo {
        /// The transfer medium's directory.
        #[arg(long, value_name = "DIR")]
        dest: PathBuf,
    },
    /// Print a label for the envelope: customer, serial, fingerprints in hex and PGP words.
    Label,
}

#[derive(Subcommand)]
enum CeremonyCommand {
    /// Check a ceremony file without the key: CSRs, policies, serials, outputs, the expected
    /// head; print the plan with each input's SHA-256. Asks for nothing, changes nothing.
    Plan {
        /// The ceremony file (YAML).
        file: PathBuf,
        /// The CA directory (for root-init and backup-import: the one to create).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The ledger head the witness recorded (checked with the file's expect_head).
        #[arg(long, value_name = "HEAD", value_parser = parse_head)]
        expect_head: Option<ExpectedHead>,
    },
    /// Run a ceremony file: each step through the pipeline, the key opened once, a
    /// confirmation before each step; then the transcript into OUT_DIR and its SHA-256 into
    /// the ledger (`ceremony_closed`).
    Run {
        /// The ceremony file (YAML).
        file: PathBuf,
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The directory for transcript.json and transcript.txt (new, or empty).
        #[arg(long, value_name = "OUT_DIR")]
        transcript: PathBuf,
        /// The ledger head the witness recorded (checked with the file's expect_head).
        #[arg(long, value_name = "HEAD", value_parser = parse_head)]
        expect_head: Option<ExpectedHead>,
        /// Do not ask before each step (rehearsals; the summaries are still printed).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        secrets: Secrets,
        #[command(flatten)]
        air_gap: AirGapArgs,
    },
    /// Verify a ceremony's transcript: in the ledger, every output matching it and the
    /// ledger, the witness signatures good. Exit 0 only if all hold.
    Verify {
        /// The transcript directory.
        out_dir: PathBuf,
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Who may sign transcripts, in ssh-keygen's allowed_signers format
        /// (default: DIR/allowed_signers).
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
    },
    /// Record a transcript in the ledger after a run that stopped between writing it and
    /// closing it (refused if anything was appended since its last step).
    Close {
        /// The transcript directory.
        out_dir: PathBuf,
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Verify the whole ledger; exit 0 only if it is intact.
    Verify {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The head the witness wrote down (64 hex digits or the first four PGP words);
        /// catches removed newest entries.
        #[arg(long, value_name = "HEAD", value_parser = parse_head)]
        expect_head: Option<ExpectedHead>,
    },
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse()
}
fn parse_slug(s: &str) -> Result<Slug, String> {
    Slug::parse(s).map_err(|e| e.to_string())
}
fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse()
        .map_err(|e: kiwi_signer::slug::TierError| e.to_string())
}
fn parse_serial(s: &str) -> Result<Serial, String> {
    Serial::parse_hex(s)
}
fn parse_reason(s: &str) -> Result<Reason, String> {
    s.parse()
}
fn parse_head(s: &str) -> Result<ExpectedHead, String> {
    ExpectedHead::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiwi-signer: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_outcome(what: &str, o: &Outcome) {
    out!("{what}");
    for w in &o.written {
        out!("  wrote       {}", w.display());
    }
    if let Some(s) = &o.serial {
        out!("  serial      {s}");
    }
    if let Some(n) = o.crl_number {
        out!("  CRL number  {n}");
    }
    out!("  ledger head {}", o.head.for_reading());
    out!("  (the witness writes the ledger head down and gives it to the next command as --expect-head)");
    for w in &o.warnings {
        eprintln!("kiwi-signer: warning: {w}");
    }
}

/// Runs one CA-changing operation through the library's pipeline and prints its outcome.
fn change(
    ca: &std::path::Path,
    what: &str,
    op: &dyn Operation,
    cb: &prompt::Terminal,
    args: RunArgs,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let hooks = args.hooks.load()?;
    let c = Ceremony {
        witness: args.witness.witness(),
        hooks: Some(&hooks),
        allow_network: args.air_gap.allow_network,
        ..Ceremony::new(cb, now)
    };
    let o = ceremony::run(ca, op, &c)?;
    print_outcome(what, &o);
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    match cli.command {
        Command::Init {
            ca,
            backend,
            policy,
            org,
            pkcs11,
            secrets,
            hooks,
            air_gap,
            head_file,
        } => {
            let spec = pkcs11.spec(backend)?;
            let hooks = hooks.load()?;
            let cb = secrets.terminal(true);
            let c = Ceremony {
                witness: Witness {
                    expect: None,
                    head_file,
                },
                hooks: Some(&hooks),
                allow_network: air_gap.allow_network,
                ..Ceremony::new(&cb, now)
            };
            let o = ceremony::init::init_org(&ca, &policy, org.as_deref(), &spec, &c)?;
            print_outcome("Root CA created", &o);
        }
        Command::Sign {
            ca,
            csr,
            slug,
            tier,
            out,
            days,
            shared,
            yes,
            secrets,
            run,
        } => {
            let bytes = std::fs::read(&csr)
                .with_context(|| format!("cannot read the CSR {}", csr.display()))?;
            let req = SignRequest {
                csr: bytes,
                csr_origin: csr.display().to_string(),
                slug,
                tier,
                days,
                out,
                shared,
            };
            let cb = secrets.terminal(yes);
            change(&ca, "Intermediate issued", &req, &cb, run, now)?;
        }
        Command::Revoke {
            ca,
            serial,
            reason,
            out,
            yes,
            secrets,
            run,
        } => {
            let op = Revoke {
                serial,
                reason,
                out,
            };
            let cb = secrets.terminal(yes);
            let what = "Intermediate revoked, CRL issued";
            change(&ca, what, &op, &cb, run, now)?;
        }
        Command::Reroot {
            ca,
            cert,
            msp_root,
            msp_crl,
            permit_dns,
            out,
            yes,
            secrets,
            run,
        } => {
            let op = Reroot::read(&cert, &msp_root, &msp_crl, permit_dns, out)?;
            let cb = secrets.terminal(yes);
            change(&ca, "Intermediate re-rooted", &op, &cb, run, now)?;
        }
        Command::Renew {
            ca,
            serial,
            csr,
            out,
            days,
            yes,
            secrets,
            run,
        } => {
            let bytes = std::fs::read(&csr)
                .with_context(|| format!("cannot read the CSR {}", csr.display()))?;
            let op = Renew {
                serial,
                csr: bytes,
                csr_origin: csr.display().to_string(),
                days,
                out,
            };
            let cb = secrets.terminal(yes);
            let what = "Intermediate renewed (revoke the one it replaces as superseded)";
            change(&ca, what, &op, &cb, run, now)?;
        }
        Command::Handover {
            ca,
            serial,
            new_root,
            out,
            yes,
            secrets,
            run,
        } => {
            let op = Handover::read(serial, &new_root, out)?;
            let cb = secrets.terminal(yes);
            let what = "Intermediate handed over (revoked as affiliationChanged), CRL issued";
            change(&ca, what, &op, &cb, run, now)?;
        }
        Command::Crl {
            ca,
            out,
            secrets,
            run,
        } => {
            let cb = secrets.terminal(true);
            change(&ca, "CRL issued", &Crl { out }, &cb, run, now)?;
        }
        Command::Export {
            ca,
            serial,
            crl_number,
            out,
        } => {
            let which = match (serial, crl_number) {
                (Some(s), _) => Recorded::Certificate(s),
                (None, Some(n)) => Recorded::Crl(n),
                (None, None) => anyhow::bail!("pass --serial HEX or --crl-number N"),
            };
            Ca::open(&ca)?.export(&which, &out)?;
            out!("wrote {}", out.display());
        }
        Command::Status {
            ca,
            warn_days,
            json,
        } => {
            let st = Ca::open(&ca)?.status_warn(now, warn_days)?;
            if json {
                out!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                out!("root         {}", st.root_subject);
                out!("root key id  {}", st.root_key_id);
                out!("backend      {}", st.backend);
                out!(
                    "ledger       {} entries, head {}",
                    st.ledger_entries,
                    st.ledger_head
                );
                out!("rollback     {}", st.rollback_protection);
                out!("intermediates ({}):", st.intermediates.len());
                for i in &st.intermediates {
                    let state = revocation_state(i.revoked.as_deref());
                    out!(
                        "  {}  {:<20} {:<5}  until {}  {}",
                        i.serial,
                        i.slug,
                        i.tier.as_str(),
                        i.not_after,
                        state
                    );
                }
                if !st.customer_owned.is_empty() {
                    out!("re-rooted and renewed here ({}):", st.customer_owned.len());
                }
                for o in &st.customer_owned {
                    let state = revocation_state(o.revoked.as_deref());
                    out!(
                        "  {}  {:<8} (replaces {})  {}  until {}  {}",
                        o.serial,
                        o.origin,
                        o.replaces,
                        o.subject,
                        o.not_after,
                        state
                    );
                }
                out!(
                    "expiring within {} days ({}):",
                    st.warn_days,
                    st.expiring.len()
                );
                for e in &st.expiring {
                    out!(
                        "  {}  {}  until {} ({} days)  {}",
                        e.serial,
                        e.subject,
                        e.not_after,
                        e.days_left,
                        e.origin
                    );
                }
                match (&st.crl_number, &st.crl_next_update, &st.next_crl_due) {
                    (Some(n), Some(next), Some(due)) => {
                        out!("CRL          number {n}, nextUpdate {next}");
                        out!("next CRL due {due}{}", if st.crl_overdue { "  OVERDUE: run `kiwi-signer crl` now" } else { "" });
                    }
                    _ => out!("CRL          none issued yet: run `kiwi-signer crl` before publishing the root"),
                }
            }
        }
        Command::Preflight { ca, json } => {
            let newest = match &ca {
                Some(dir) => Some(ca::verify_ledger(dir, None)?.last_time),
                None => None,
            };
            let checks = kiwi_signer::preflight::run(&Default::default(), now, newest);
            let ok = kiwi_signer::preflight::passed(&checks);
            if json {
                out!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                for c in &checks {
                    out!(
                        "{} {:<20} {}",
                        if c.ok { "ok  " } else { "FAIL" },
                        c.name,
                        c.detail
                    );
                }
            }
            if !ok {
                anyhow::bail!(
                    "preflight failed: this laptop is not ready for a ceremony (see above)"
                );
            }
        }
        Command::Hook { command } => {
            let mut input = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)?;
            match command {
                HookCommand::CopyTo { dest } => {
                    let copies = kiwi_signer::hooks::builtin::copy_to(&input, &dest)
                        .map_err(anyhow::Error::msg)?;
                    for c in copies {
                        eprintln!("copied to {}", c.display());
                    }
                }
                HookCommand::Label => {
                    let label =
                        kiwi_signer::hooks::builtin::label(&input).map_err(anyhow::Error::msg)?;
                    use std::io::Write as _;
                    let _ = write!(std::io::stdout(), "{label}");
                }
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            kiwi_signer::shell::completions(&mut Cli::command(), shell, &mut std::io::stdout());
        }
        Command::Man { out } => {
            use clap::CommandFactory as _;
            let pages = kiwi_signer::shell::write_man_pages(Cli::command(), &out)?;
            out!("wrote {} man pages into {}", pages.len(), out.display());
        }
        Command::Ceremony { command } => scripted(command, now)?,
        Command::Ledger {
            command: LedgerCommand::Verify { ca, expect_head },
        } => {
            let st = ca::verify_ledger(&ca, expect_head.as_ref())?;
            out!("ledger intact: {} entries", st.len);
            out!("  head {}", st.head.for_reading());
            if st.ignored_tail > 0 {
                out!(
                    "  {} bytes after the committed end (ledger.commit) are ignored: an append \
                     that a crash stopped before it committed, or bytes added by something else \
                     (the next command removes them)",
                    st.ignored_tail
                );
            }
            for n in &st.before_tier_markers {
                out!("  entry {n}: issued before tier markers (its recorded tier is not in the certificate, so it is not checked)");
            }
        }
    }
    Ok(())
}

/// How `status` shows a certificate's revocation: `valid` or `REVOKED <reason, time>`.
fn revocation_state(revoked: Option<&str>) -> String {
    revoked.map_or_else(|| "valid".into(), |r| format!("REVOKED {r}"))
}

/// `ceremony plan|run|verify|close`.
fn scripted(command: CeremonyCommand, now: OffsetDateTime) -> anyhow::Result<()> {
    use kiwi_signer::ceremony::script::{self, sshsig, transcript, Script};
    match command {
        CeremonyCommand::Plan {
            file,
            ca,
            expect_head,
        } => {
            let s = Script::load(&file)?;
            let cb = prompt::Terminal::new(None, false);
            let c = Ceremony {
                witness: Witness {
                    expect: expect_head,
                    head_file: None,
                },
                ..Ceremony::new(&cb, now)
            };
            let p = script::plan(&s, &ca, &c)?;
            out!("{}", p.text(&s));
            out!("Plan checked: nothing was asked for and nothing was written.");
        }
        CeremonyCommand::Run {
            file,
            ca,
            transcript: out_dir,
            expect_head,
            yes,
            secrets,
            air_gap,
        } => {
            let s = Script::load(&file)?;
            let cb = secrets.terminal(yes);
            let c = Ceremony {
                witness: Witness {
                    expect: expect_head,
                    head_file: None,
                },
                allow_network: air_gap.allow_network,
                ..Ceremony::new(&cb, now)
            };
            let r = script::run(&s, &ca, &out_dir, &script::Binary::default(), &c)?;
            for w in &r.warnings {
                eprintln!("kiwi-signer: warning: {w}");
            }
            out!("Ceremony closed: {} step(s)", r.transcript.steps.len());
            out!("  transcript  {}", out_dir.join(transcript::JSON).display());
            out!("  SHA-256     {}", r.transcript_sha256.for_reading());
            out!("  ledger head {}", r.head.for_reading());
            out!(
                "  (the witness signs it: ssh-keygen -Y sign -n {} -f KEY {})",
                sshsig::NAMESPACE,
                out_dir.join(transcript::JSON).display()
            );
        }
        CeremonyCommand::Verify {
            out_dir,
            ca,
            allowed_signers,
        } => {
            let path = allowed_signers.unwrap_or_else(|| ca.join("allowed_signers"));
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read the allowed signers {} (pass --allowed-signers FILE)",
                    path.display()
                )
            })?;
            let allowed = sshsig::parse_allowed_signers(&path.display().to_string(), &text)?;
            let v = transcript::verify(&out_dir, &ca, &allowed)?;
            for f in &v.findings {
                out!("{} {}", if f.ok { "ok  " } else { "FAIL" }, f.what);
            }
            if !v.passed() {
                anyhow::bail!(
                    "the ceremony in {} does not verify (see FAIL above)",
                    out_dir.display()
                );
            }
            out!("Ceremony verified.");
        }
        CeremonyCommand::Close { out_dir, ca } => {
            let head = script::close(&out_dir, &ca, now)?;
            out!("Ceremony closed in the ledger");
            out!("  ledger head {}", head.for_reading());
        }
    }
    Ok(())
}
