//! The sops front: `kiwictl sops ARGS...`, and kiwictl started under the name `sops`, accept
//! the sops 3.x command line for what kiwictl implements (age keys; decrypt, encrypt, rotate,
//! updatekeys, set, unset, edit, exec-env, exec-file, filestatus) and refuse the rest (PGP,
//! cloud KMS, Vault, key services, publish) before touching anything. Each command is turned
//! into the same typed requests `kiwictl secrets` uses ([`kiwi_tooling::sops::request`]); errors
//! exit with sops's status codes (its `cmd/sops/codes`) where scripts test them.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kiwi_tooling::sops::config::find_config;
use kiwi_tooling::sops::edit::{edit_file, Outcome as EditOutcome};
use kiwi_tooling::sops::exec::{exec_env, exec_file, FileMode, DEFAULT_FILE_NAME};
use kiwi_tooling::sops::files::read;
use kiwi_tooling::sops::path::{parse_path, Node, Step};
use kiwi_tooling::sops::request::{encrypt_named, format_of, DecryptRequest, EncryptRequest};
use kiwi_tooling::sops::set::{apply_file_as, Change};
use kiwi_tooling::sops::status::file_status;
use kiwi_tooling::sops::tree::rotate_file;
use kiwi_tooling::sops::{FileFormat, Identities, OpenDoc, Rules, SopsError};

use crate::secrets::{
    deliver, read_input, recipient_texts, recipients, warn_ignore_mac, Dest, IdentityArgs, Input,
    SecretsCommand, TerminalEditor, TreeArgs,
};

/// sops's exit statuses (getsops/sops `cmd/sops/codes/codes.go`) that the front gives.
mod codes {
    pub const ERROR_GENERIC: u8 = 1;
    pub const ERROR_DUMPING_TREE: u8 = 4;
    pub const ERROR_INVALID_SET_FORMAT: u8 = 7;
    pub const ERROR_CONFLICTING_PARAMETERS: u8 = 8;
    pub const ERROR_DECRYPTING_TREE: u8 = 25;
    pub const MAC_MISMATCH: u8 = 51;
    pub const INVALID_TREE_PATH_FORMAT: u8 = 91;
    pub const NO_FILE_SPECIFIED: u8 = 100;
    pub const COULD_NOT_RETRIEVE_KEY: u8 = 128;
    pub const FILE_HAS_NOT_BEEN_MODIFIED: u8 = 200;
    pub const FILE_ALREADY_ENCRYPTED: u8 = 203;
}

const ABOUT: &str = "kiwictl's sops front: the sops 3.x command line for age keys \
(decrypt, encrypt, rotate, updatekeys, set, unset, edit, exec-env, exec-file, filestatus). \
PGP, cloud KMS, Vault, key services and publish are refused: use the Go sops for those files.";

const AFTER: &str = "Exit status as sops 3.x: 0 success; 1 error; 4 cannot write the output \
format; 7 bad --set/set value; 8 conflicting modes; 25 a value does not decrypt; 51 MAC \
mismatch or no MAC; 91 bad --extract/set path; 100 no such file; 128 no identity opens the data key; \
200 edit made no change; 203 already encrypted. A refused feature exits 1 and changes nothing.";

/// The sops command line (urfave/cli layout: global flags, then a verb or, in sops's legacy
/// mode, `-d`/`-e`/`-r`/`--set` and the file).
#[derive(Parser)]
#[command(
    name = "sops",
    about = ABOUT,
    after_help = AFTER,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
struct SopsCli {
    #[command(flatten)]
    g: Global,
    #[command(subcommand)]
    verb: Option<Verb>,
    /// The file (legacy mode: `sops -d FILE`, `sops -e -i FILE`; no mode: edit it).
    file: Option<PathBuf>,
}

/// sops's global flags (accepted before or after the verb).
#[derive(Args)]
struct Global {
    /// Decrypt (legacy mode).
    #[arg(short = 'd', long, global = true)]
    decrypt: bool,
    /// Encrypt (legacy mode).
    #[arg(short = 'e', long, global = true)]
    encrypt: bool,
    /// New data key, every value re-encrypted (legacy mode).
    #[arg(short = 'r', long, global = true)]
    rotate: bool,
    /// Print what this is.
    #[arg(short = 'v', long)]
    version: bool,
    /// age recipients, comma-separated (default: $SOPS_AGE_RECIPIENTS, else the creation rule).
    #[arg(short = 'a', long, global = true, value_name = "RECIPIENTS")]
    age: Vec<String>,
    /// Write the result back to the file.
    #[arg(short = 'i', long, global = true)]
    in_place: bool,
    /// Only this part of the document: '["key"][0]'.
    #[arg(long, global = true, value_name = "PATH")]
    extract: Option<String>,
    /// yaml, json, dotenv, ini or binary (default: from the file name).
    #[arg(long, global = true, value_name = "TYPE")]
    input_type: Option<String>,
    /// yaml, json, dotenv, ini or binary (default: the input's).
    #[arg(long, global = true, value_name = "TYPE")]
    output_type: Option<String>,
    /// Legacy set: '["key"] JSON_VALUE', written in place.
    #[arg(long, global = true, value_name = "PATH VALUE")]
    set: Option<String>,
    /// Do not check the MAC (a loud warning; every value must still decrypt).
    #[arg(long, global = true)]
    ignore_mac: bool,
    /// Compute the MAC over encrypted values only.
    #[arg(long, global = true)]
    mac_only_encrypted: bool,
    /// Leave values whose key ends with this in the clear.
    #[arg(long, global = true)]
    unencrypted_suffix: Option<String>,
    /// Encrypt only values whose key ends with this.
    #[arg(long, global = true)]
    encrypted_suffix: Option<String>,
    /// Leave values whose key matches this in the clear.
    #[arg(long, global = true)]
    unencrypted_regex: Option<String>,
    /// Encrypt only values whose key matches this.
    #[arg(long, global = true)]
    encrypted_regex: Option<String>,
    /// The .sops.yaml to use (default: $SOPS_CONFIG, else the nearest above the working
    /// directory).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write the result to this new file (created 0600; never overwritten).
    #[arg(long, global = true, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Take the format and creation rule from this name (for stdin).
    #[arg(long, global = true, value_name = "NAME")]
    filename_override: Option<PathBuf>,
    /// Add age recipients (rotate).
    #[arg(long, global = true, value_name = "RECIPIENTS")]
    add_age: Vec<String>,
    /// Remove age recipients (rotate).
    #[arg(long, global = true, value_name = "RECIPIENTS")]
    rm_age: Vec<String>,
    /// Only 0 (the default layout) is supported.
    #[arg(long, global = true, value_name = "N")]
    indent: Option<u32>,
    /// Only 0 (the creation rule's) is supported.
    #[arg(long, global = true, value_name = "N")]
    shamir_secret_sharing_threshold: Option<u32>,
    /// Accepted for compatibility: age is the only key type.
    #[arg(long, global = true, value_name = "TYPES")]
    decryption_order: Option<String>,
    /// Accepted for compatibility (kiwictl has no update check).
    #[arg(long, global = true)]
    disable_version_check: bool,
    /// Accepted for compatibility (kiwictl has no update check).
    #[arg(long, global = true)]
    check_for_updates: bool,
    /// Accepted for compatibility.
    #[arg(long, global = true)]
    verbose: bool,
    /// Accepted for compatibility: keys are always used locally.
    #[arg(long, global = true)]
    enable_local_keyservice: bool,
}

/// sops's verbs.
#[derive(Subcommand)]
enum Verb {
    /// Decrypt a file (stdin when none) to stdout.
    Decrypt { file: Option<PathBuf> },
    /// Encrypt a file (stdin when none, with --filename-override) to stdout.
    Encrypt { file: Option<PathBuf> },
    /// New data key, every value re-encrypted; to stdout unless --in-place.
    Rotate { file: PathBuf },
    /// Edit in $VISUAL/$EDITOR.
    Edit { file: PathBuf },
    /// Set one value: FILE '["key"]' JSON_VALUE.
    Set {
        /// VALUE names a file holding the JSON value.
        #[arg(long, conflicts_with = "value_stdin")]
        value_file: bool,
        /// The JSON value comes on stdin (no VALUE).
        #[arg(long)]
        value_stdin: bool,
        /// Do nothing when the value is already there.
        #[arg(long)]
        idempotent: bool,
        file: PathBuf,
        path: String,
        value: Option<String>,
    },
    /// Remove one value: FILE '["key"]'.
    Unset {
        /// Do nothing when the path is missing.
        #[arg(long)]
        idempotent: bool,
        file: PathBuf,
        path: String,
    },
    /// Make each file's recipients match its .sops.yaml rule.
    Updatekeys {
        /// Apply without asking.
        #[arg(short = 'y', long)]
        yes: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run COMMAND with the file's keys in its environment.
    ExecEnv {
        /// Only the file's keys in the environment.
        #[arg(long)]
        pristine: bool,
        #[command(flatten)]
        refused: ExecRefused,
        file: PathBuf,
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run COMMAND with {} replaced by the path of the plaintext.
    ExecFile {
        /// A 0600 temporary file instead of a FIFO.
        #[arg(long)]
        no_fifo: bool,
        /// The plaintext's file name.
        #[arg(long, default_value = DEFAULT_FILE_NAME)]
        filename: String,
        #[command(flatten)]
        refused: ExecRefused,
        file: PathBuf,
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print {"encrypted":true|false}.
    Filestatus { file: Option<PathBuf> },
    /// Refused: kiwictl does not publish to S3/GCS/Vault.
    #[command(hide = true)]
    Publish {
        #[arg(num_args = 0.., allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Refused: kiwictl runs no key service.
    #[command(hide = true)]
    Keyservice {
        #[arg(num_args = 0.., allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Refused: edit key groups with .sops.yaml and updatekeys.
    #[command(hide = true)]
    Groups {
        #[arg(num_args = 0.., allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

/// exec-env/exec-file flags kiwictl refuses.
#[derive(Args)]
struct ExecRefused {
    #[arg(long, hide = true)]
    user: Option<String>,
    #[arg(long, hide = true)]
    background: bool,
    #[arg(long, hide = true)]
    same_process: bool,
}

/// A refusal or usage error with the sops exit status it gets.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
struct Coded {
    code: u8,
    msg: String,
}

fn coded(code: u8, msg: impl Into<String>) -> anyhow::Error {
    Coded {
        code,
        msg: msg.into(),
    }
    .into()
}

/// sops flags for key types and services kiwictl does not have.
const REFUSED_FLAGS: &[(&str, &str)] = &[
    ("--pgp", "PGP"),
    ("-p", "PGP"),
    ("--add-pgp", "PGP"),
    ("--rm-pgp", "PGP"),
    ("--kms", "AWS KMS"),
    ("-k", "AWS KMS"),
    ("--add-kms", "AWS KMS"),
    ("--rm-kms", "AWS KMS"),
    ("--aws-profile", "AWS KMS"),
    ("--encryption-context", "AWS KMS"),
    ("--gcp-kms", "GCP KMS"),
    ("--add-gcp-kms", "GCP KMS"),
    ("--rm-gcp-kms", "GCP KMS"),
    ("--hckms", "HuaweiCloud KMS"),
    ("--add-hckms", "HuaweiCloud KMS"),
    ("--rm-hckms", "HuaweiCloud KMS"),
    ("--azure-kv", "Azure Key Vault"),
    ("--add-azure-kv", "Azure Key Vault"),
    ("--rm-azure-kv", "Azure Key Vault"),
    ("--hc-vault-transit", "HashiCorp Vault"),
    ("--add-hc-vault-transit", "HashiCorp Vault"),
    ("--rm-hc-vault-transit", "HashiCorp Vault"),
    ("--keyservice", "remote key services"),
    ("--show-master-keys", "showing master keys in the editor"),
    ("-s", "showing master keys in the editor"),
    (
        "--unencrypted-comment-regex",
        "comment-based encryption rules",
    ),
    (
        "--encrypted-comment-regex",
        "comment-based encryption rules",
    ),
];

/// Environment variables through which sops would add master keys kiwictl cannot use to a
/// file it encrypts (sops reads them only then).
const REFUSED_ENV: &[(&str, &str)] = &[
    ("SOPS_PGP_FP", "PGP"),
    ("SOPS_KMS_ARN", "AWS KMS"),
    ("SOPS_GCP_KMS_IDS", "GCP KMS"),
    ("SOPS_HUAWEICLOUD_KMS_IDS", "HuaweiCloud KMS"),
    ("SOPS_AZURE_KEYVAULT_URLS", "Azure Key Vault"),
    ("SOPS_VAULT_URIS", "HashiCorp Vault"),
];

fn refusal(what: &str, how: &str) -> anyhow::Error {
    coded(
        codes::ERROR_GENERIC,
        format!(
            "{how}: kiwictl's sops front does not support {what} (age keys only); nothing was \
             done. Use the Go sops for this, or move the file to age recipients"
        ),
    )
}

/// Refuses flags for key types kiwictl does not have, before anything is parsed or read. The
/// command of exec-env/exec-file is not looked at (its words are its own).
fn refuse_flags(args: &[OsString]) -> Result<()> {
    for a in args.iter().skip(1) {
        let Some(a) = a.to_str() else { continue };
        if matches!(a, "--" | "exec-env" | "exec-file") {
            break;
        }
        let name = a.split_once('=').map_or(a, |(n, _)| n);
        if let Some((flag, what)) = REFUSED_FLAGS.iter().find(|(f, _)| *f == name) {
            return Err(refusal(what, flag));
        }
    }
    Ok(())
}

/// Refuses to encrypt while sops's environment names keys kiwictl cannot use.
fn refuse_env() -> Result<()> {
    for (var, what) in REFUSED_ENV {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            return Err(refusal(what, &format!("{var} is set")));
        }
    }
    Ok(())
}

/// Whether this process was started under the name `sops` (a symlink or copy named so).
pub fn invoked_as_sops() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == "sops"))
        .unwrap_or(false)
}

/// Runs the sops front on `args` (`args[0]` is the program name); prints errors.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .chain()
                .find_map(|c| {
                    c.downcast_ref::<Coded>()
                        .map(|c| c.code)
                        .or_else(|| c.downcast_ref::<SopsError>().map(sops_code))
                })
                .unwrap_or(codes::ERROR_GENERIC);
            eprintln!("sops (kiwictl): error: {}", crate::message(&e));
            ExitCode::from(code)
        }
    }
}

/// The sops exit status for an engine error.
fn sops_code(e: &SopsError) -> u8 {
    match e {
        SopsError::NoIdentity(_) => codes::COULD_NOT_RETRIEVE_KEY,
        // sops 3.11 exits 51, not its MacNotFound (52), for a file without a MAC.
        SopsError::MacMismatch | SopsError::MacMissing => codes::MAC_MISMATCH,
        SopsError::AlreadyEncrypted => codes::FILE_ALREADY_ENCRYPTED,
        SopsError::ValueTampered { .. }
        | SopsError::BadEncValue { .. }
        | SopsError::CommentUnreadable { .. } => codes::ERROR_DECRYPTING_TREE,
        SopsError::CannotEmit { .. } => codes::ERROR_DUMPING_TREE,
        SopsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            codes::NO_FILE_SPECIFIED
        }
        _ => codes::ERROR_GENERIC,
    }
}

fn version() -> String {
    format!(
        "sops 3.11.0 (kiwictl {}: a sops-compatible subset with age keys only; \
         no PGP, KMS, Vault, key service or publish)",
        env!("CARGO_PKG_VERSION")
    )
}

fn run(args: Vec<OsString>) -> Result<ExitCode> {
    refuse_flags(&args)?;
    let cli = match SopsCli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            e.print()?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(codes::ERROR_GENERIC));
        }
    };
    let g = &cli.g;
    if g.version {
        out!("{}", version());
        return Ok(ExitCode::SUCCESS);
    }
    if g.indent.is_some_and(|n| n != 0) {
        bail!("--indent: kiwictl writes sops's default layout only; drop --indent");
    }
    if g.shamir_secret_sharing_threshold.is_some_and(|n| n != 0) {
        bail!(
            "--shamir-secret-sharing-threshold: set `shamir_threshold` in the .sops.yaml \
             creation rule instead; nothing was done"
        );
    }
    let code = match cli.verb {
        Some(v) => verb(g, v)?,
        None => legacy(g, cli.file)?,
    };
    Ok(ExitCode::from(code))
}

/// sops's legacy mode: `-d`, `-e`, `-r` or `--set` with the file; none of them: edit.
fn legacy(g: &Global, file: Option<PathBuf>) -> Result<u8> {
    let modes = [g.decrypt, g.encrypt, g.rotate, g.set.is_some()];
    if modes.iter().filter(|m| **m).count() > 1 {
        return Err(coded(
            codes::ERROR_CONFLICTING_PARAMETERS,
            "more than one of --decrypt, --encrypt, --rotate and --set; pass one",
        ));
    }
    if g.decrypt {
        return decrypt(g, file.as_deref());
    }
    if g.encrypt {
        return encrypt(g, file.as_deref());
    }
    let Some(file) = file else {
        return Err(coded(codes::NO_FILE_SPECIFIED, "no file specified"));
    };
    if g.rotate {
        return rotate(g, &file);
    }
    if let Some(set) = &g.set {
        let Some((path, value)) = set.split_once("] ").map(|(p, v)| (format!("{p}]"), v)) else {
            return Err(coded(
                codes::ERROR_INVALID_SET_FORMAT,
                "invalid --set format: expected '[\"key\"] JSON_VALUE'",
            ));
        };
        return change(
            g,
            &file,
            Change::Set(tree_path(&path)?, json_value(value)?),
            false,
        );
    }
    edit(g, &file)
}

fn verb(g: &Global, v: Verb) -> Result<u8> {
    match v {
        Verb::Decrypt { file } => decrypt(g, file.as_deref()),
        Verb::Encrypt { file } => encrypt(g, file.as_deref()),
        Verb::Rotate { file } => rotate(g, &file),
        Verb::Edit { file } => edit(g, &file),
        Verb::Set {
            value_file,
            value_stdin,
            idempotent,
            file,
            path,
            value,
        } => {
            let text = match (value_file, value_stdin, value) {
                (false, true, None) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the value from stdin")?;
                    s
                }
                (true, false, Some(f)) => String::from_utf8(read(Path::new(&f))?)
                    .with_context(|| format!("{f}: the value file is not UTF-8"))?,
                (false, false, Some(v)) => v,
                (_, true, Some(_)) => bail!("--value-stdin takes no VALUE argument"),
                _ => bail!("set needs FILE PATH VALUE (or --value-stdin, or --value-file FILE)"),
            };
            let change = Change::Set(tree_path(&path)?, json_value(&text)?);
            self::change(g, &file, change, idempotent)
        }
        Verb::Unset {
            idempotent,
            file,
            path,
        } => change(g, &file, Change::Unset(tree_path(&path)?), idempotent),
        Verb::Updatekeys { yes, files } => {
            if g.config.is_some() {
                bail!(
                    "updatekeys --config: kiwictl takes each file's rule from the .sops.yaml \
                     above that file; run it without --config (nothing was changed)"
                );
            }
            let cmd = SecretsCommand::Updatekeys {
                paths: files,
                yes,
                ids: IdentityArgs::default(),
                tree: TreeArgs::default(),
                hooks: None,
            };
            Ok(u8::try_from(crate::secrets::run(cmd)?).unwrap_or(1))
        }
        Verb::ExecEnv {
            pristine,
            refused,
            file,
            command,
        } => {
            refused.check()?;
            let (_, doc) = open_file(g, &file)?;
            Ok(exit_byte(exec_env(&doc, &command.join(" "), pristine)?))
        }
        Verb::ExecFile {
            no_fifo,
            filename,
            refused,
            file,
            command,
        } => {
            refused.check()?;
            let (req, doc) = open_file(g, &file)?;
            let mode = if no_fifo {
                FileMode::TempFile
            } else {
                FileMode::Fifo
            };
            let plain = req.render(&doc)?;
            Ok(exit_byte(exec_file(
                &plain,
                &command.join(" "),
                mode,
                &filename,
            )?))
        }
        Verb::Filestatus { file } => {
            let input = input(g, file.as_deref())?;
            let fmt = format_of(&input.name, input_type(g.input_type.as_deref())?);
            let st = file_status(&input.bytes, fmt)?;
            out!("{}", serde_json::to_string(&st)?);
            Ok(0)
        }
        Verb::Publish { .. } => Err(refusal("publish", "publish")),
        Verb::Keyservice { .. } => Err(refusal("a key service", "keyservice")),
        Verb::Groups { .. } => Err(refusal(
            "editing key groups from the command line (set them in .sops.yaml and run updatekeys)",
            "groups",
        )),
    }
}

impl ExecRefused {
    fn check(&self) -> Result<()> {
        if self.user.is_some() {
            return Err(refusal("running the command as another user", "--user"));
        }
        if self.background {
            return Err(refusal(
                "background commands (deprecated in sops)",
                "--background",
            ));
        }
        if self.same_process {
            return Err(refusal("replacing the process", "--same-process"));
        }
        Ok(())
    }
}

/// A child's exit status as ours (a status above 255 cannot happen on Unix; 1 then).
fn exit_byte(status: i32) -> u8 {
    u8::try_from(status).unwrap_or(1)
}

fn identities() -> Result<Identities> {
    Ok(Identities::from_env(&[])?)
}

/// An `--input-type`/`--output-type` value.
fn input_type(t: Option<&str>) -> Result<Option<FileFormat>> {
    t.map(|t| {
        FileFormat::from_name(t).ok_or_else(|| {
            anyhow::anyhow!("unknown type `{t}`: pass yaml, json, dotenv, ini or binary")
        })
    })
    .transpose()
}

/// A path in sops's index syntax; a malformed one exits 91 as in sops.
fn tree_path(p: &str) -> Result<Vec<Step>> {
    parse_path(p).map_err(|e| coded(codes::INVALID_TREE_PATH_FORMAT, e.to_string()))
}

/// A `set` value; not JSON exits 7 as in sops.
fn json_value(v: &str) -> Result<Node> {
    Node::parse(v.as_bytes(), FileFormat::Json).map_err(|e| {
        coded(
            codes::ERROR_INVALID_SET_FORMAT,
            format!("the value must be JSON, e.g. '\"text\"', '5' or '{{\"k\": 1}}': {e}"),
        )
    })
}

/// The config sops would use: `--config`, `$SOPS_CONFIG`, else the nearest above the working
/// directory.
fn config(g: &Global) -> Option<PathBuf> {
    g.config
        .clone()
        .or_else(|| std::env::var_os("SOPS_CONFIG").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| find_config(Path::new(".")))
}

/// Where the result goes: `--in-place`, `--output`, else stdout.
fn dest(g: &Global) -> Result<Dest> {
    match (g.in_place, &g.output) {
        (true, Some(_)) => Err(coded(
            codes::ERROR_CONFLICTING_PARAMETERS,
            "--in-place and --output: pass one",
        )),
        (true, None) => Ok(Dest::InPlace),
        (false, Some(o)) => Ok(Dest::New(o.clone())),
        (false, None) => Ok(Dest::Stdout),
    }
}

/// The decrypt request of the global flags, and the format of `name`.
fn decrypt_request(g: &Global, name: &Path) -> Result<(DecryptRequest, FileFormat)> {
    let req = DecryptRequest {
        input_format: input_type(g.input_type.as_deref())?,
        output_format: input_type(g.output_type.as_deref())?,
        extract: g.extract.as_deref().map(tree_path).transpose()?,
        ignore_mac: g.ignore_mac,
    };
    let fmt = format_of(name, req.input_format);
    Ok((req, fmt))
}

/// Reads the input file, or stdin when a name or type for it is given; neither: exit 100.
fn input(g: &Global, file: Option<&Path>) -> Result<Input> {
    if file.is_none() && g.filename_override.is_none() && g.input_type.is_none() {
        return Err(coded(
            codes::NO_FILE_SPECIFIED,
            "no file specified: pass FILE, or --filename-override NAME / --input-type TYPE to \
             read stdin",
        ));
    }
    read_input(file, g.filename_override.as_deref(), g.input_type.is_some())
}

/// Opens `file` with the global flags' decrypt request.
fn open_file(g: &Global, file: &Path) -> Result<(DecryptRequest, OpenDoc)> {
    let (req, fmt) = decrypt_request(g, file)?;
    let doc = req.open(&read(file)?, fmt, &identities()?)?;
    Ok((req, doc))
}

fn decrypt(g: &Global, file: Option<&Path>) -> Result<u8> {
    let dest = dest(g)?;
    let input = input(g, file)?;
    let (req, fmt) = decrypt_request(g, &input.name)?;
    if req.ignore_mac {
        warn_ignore_mac(&input.name);
    }
    let doc = req.open(&input.bytes, fmt, &identities()?)?;
    deliver(&dest, &input, &req.render(&doc)?)?;
    Ok(0)
}

fn encrypt(g: &Global, file: Option<&Path>) -> Result<u8> {
    refuse_env()?;
    let dest = dest(g)?;
    let input = input(g, file)?;
    let mut age = g.age.clone();
    if age.is_empty() {
        age.extend(
            std::env::var("SOPS_AGE_RECIPIENTS")
                .ok()
                .filter(|s| !s.is_empty()),
        );
    }
    let name = std::path::absolute(&input.name).unwrap_or(input.name.clone());
    let req = EncryptRequest {
        input_format: format_of(&input.name, input_type(g.input_type.as_deref())?),
        output_format: input_type(g.output_type.as_deref())?,
        age: recipients(&age)?,
        rules: Rules {
            encrypted_regex: g.encrypted_regex.clone(),
            unencrypted_regex: g.unencrypted_regex.clone(),
            encrypted_suffix: g.encrypted_suffix.clone(),
            unencrypted_suffix: g.unencrypted_suffix.clone(),
            mac_only_encrypted: g.mac_only_encrypted,
        },
        config: config(g),
    };
    let out = encrypt_named(&input.bytes, &name, &req)?;
    deliver(&dest, &input, &out)?;
    Ok(0)
}

fn rotate(g: &Global, file: &Path) -> Result<u8> {
    let dest = dest(g)?;
    let input = read_input(Some(file), None, false)?;
    let rm = recipient_texts(&g.rm_age);
    let outcome = rotate_file(
        file,
        &input.bytes,
        &identities()?,
        &recipients(&g.add_age)?,
        &rm,
    );
    match (outcome.rewrite, outcome.result.error) {
        (Some(bytes), _) => deliver(&dest, &input, &bytes)?,
        (None, Some(e)) => bail!("{}: {e}", file.display()),
        (None, None) => bail!("{}: nothing to rotate", file.display()),
    }
    Ok(0)
}

/// `set`/`unset`: with `--output-type`, sops writes the changed file back in that format
/// (whatever its name says), and so does the front.
fn change(g: &Global, file: &Path, change: Change, idempotent: bool) -> Result<u8> {
    let fmt = format_of(file, input_type(g.input_type.as_deref())?);
    let out_fmt = input_type(g.output_type.as_deref())?.unwrap_or(fmt);
    apply_file_as(file, fmt, out_fmt, &identities()?, change, idempotent)
        .with_context(|| format!("{}", file.display()))?;
    Ok(0)
}

fn edit(g: &Global, file: &Path) -> Result<u8> {
    let fmt = format_of(file, input_type(g.input_type.as_deref())?);
    match edit_file(file, fmt, &identities()?, &mut TerminalEditor)
        .with_context(|| format!("{}", file.display()))?
    {
        EditOutcome::Saved => Ok(0),
        EditOutcome::Unchanged => Err(coded(
            codes::FILE_HAS_NOT_BEEN_MODIFIED,
            format!("{}: file has not changed, exiting", file.display()),
        )),
    }
}
