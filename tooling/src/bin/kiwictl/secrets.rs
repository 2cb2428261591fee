//! `kiwictl secrets …`: argument parsing and printing around `kiwi_tooling::sops`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use kiwi_tooling::sops::config::config_near;
use kiwi_tooling::sops::edit::{edit_file, EditCallbacks, Outcome as EditOutcome};
use kiwi_tooling::sops::exec::{exec_env, exec_file, FileMode, DEFAULT_FILE_NAME};
use kiwi_tooling::sops::files::{read, write_atomic, write_new_private};
use kiwi_tooling::sops::path::{parse_path, Node};
use kiwi_tooling::sops::request::{
    encrypt_named, format_of as request_format, DecryptRequest, EncryptRequest,
};
use kiwi_tooling::sops::set::{apply_file, Change};
use kiwi_tooling::sops::status::file_status;
use kiwi_tooling::sops::tree::{
    rotate_file, run_tree, updatekeys_file, verify_file, Status, Summary, TreeOptions,
};
use kiwi_tooling::sops::{
    open, AgeRecipient, FileFormat, Identities, OpenDoc, Rules, SopsError, Unlock,
};

/// Input formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum InputType {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// dotenv.
    Dotenv,
    /// INI.
    Ini,
    /// Any bytes.
    Binary,
}

impl From<InputType> for FileFormat {
    fn from(t: InputType) -> FileFormat {
        match t {
            InputType::Yaml => FileFormat::Yaml,
            InputType::Json => FileFormat::Json,
            InputType::Dotenv => FileFormat::Dotenv,
            InputType::Ini => FileFormat::Ini,
            InputType::Binary => FileFormat::Binary,
        }
    }
}

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum OutputType {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// dotenv.
    Dotenv,
    /// INI.
    Ini,
}

impl From<OutputType> for FileFormat {
    fn from(t: OutputType) -> FileFormat {
        match t {
            OutputType::Yaml => FileFormat::Yaml,
            OutputType::Json => FileFormat::Json,
            OutputType::Dotenv => FileFormat::Dotenv,
            OutputType::Ini => FileFormat::Ini,
        }
    }
}

/// `--output-type` on encrypt.
#[derive(Args)]
pub struct OutputArgs {
    /// Write the encrypted file in this format (default: the input's), as sops does.
    #[arg(long, value_enum)]
    output_type: Option<OutputType>,
}

/// `--extract` and `--output-type` on decrypt.
#[derive(Args)]
pub struct ViewArgs {
    /// Print only this part, in sops's index syntax: '["key"]["list"][0]'.
    #[arg(long, value_name = "PATH")]
    extract: Option<String>,
    /// Print the plaintext in this format (default: the file's), as sops does.
    #[arg(long, value_enum)]
    output_type: Option<OutputType>,
}

impl ViewArgs {
    /// The decrypt request these options and the others of `decrypt` make.
    fn request(&self, ignore_mac: bool, input_type: Option<InputType>) -> Result<DecryptRequest> {
        Ok(DecryptRequest {
            input_format: input_type.map(FileFormat::from),
            output_format: self.output_type.map(FileFormat::from),
            extract: self.extract.as_deref().map(parse_path).transpose()?,
            ignore_mac,
        })
    }
}

/// Options of `set` and `unset`.
#[derive(Args)]
pub struct DailyArgs {
    /// Input format (default: from the file extension).
    #[arg(long, value_enum)]
    input_type: Option<InputType>,
    #[command(flatten)]
    ids: IdentityArgs,
}

/// Runs `set` or `unset` on one file.
fn change_file(file: &Path, daily: DailyArgs, change: Change) -> Result<i32> {
    let ids = Identities::from_env(&daily.ids.identity)?;
    let fmt = format_of(file, daily.input_type);
    apply_file(file, fmt, &ids, change, false).with_context(|| format!("{}", file.display()))?;
    Ok(0)
}

/// The terminal side of `secrets edit`: the user's editor, and a question on invalid syntax.
pub(crate) struct TerminalEditor;

impl EditCallbacks for TerminalEditor {
    fn edit(&mut self, path: &Path) -> std::io::Result<bool> {
        // SOPS_EDITOR first, as sops 3.x reads it, then the usual variables.
        let editor = std::env::var("SOPS_EDITOR")
            .or_else(|_| std::env::var("VISUAL"))
            .or_else(|_| std::env::var("EDITOR"))
            .unwrap_or_else(|_| "vi".into());
        // Through the shell, so EDITOR may carry arguments ("code --wait"); the key stays out
        // of the editor's environment.
        std::process::Command::new("sh")
            .args(["-c", &format!("{editor} \"$1\""), "kiwictl-edit"])
            .arg(path)
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_CMD")
            .status()
            .map(|s| s.success())
    }

    fn reopen(&mut self, why: &str) -> bool {
        eprintln!("kiwictl: the edited file is invalid: {why}");
        if !std::io::stdin().is_terminal() {
            return false;
        }
        eprint!("Reopen the editor? [Y/n] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok() && !answer.trim().eq_ignore_ascii_case("n")
    }
}

/// Where identities come from.
#[derive(Args, Default)]
pub struct IdentityArgs {
    /// age identity file (in addition to SOPS_AGE_KEY_FILE, SOPS_AGE_KEY and ~/.config/sops/age/keys.txt).
    #[arg(long = "identity", value_name = "FILE")]
    identity: Vec<PathBuf>,
}

/// Options shared by tree commands.
#[derive(Args, Default)]
pub struct TreeArgs {
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: eight per core).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

/// Where the input comes from and what name it goes by.
#[derive(Args)]
pub struct InputArgs {
    /// Take the format and the .sops.yaml creation rule from this name instead of the file's
    /// (required when reading stdin).
    #[arg(long, value_name = "NAME")]
    filename_override: Option<PathBuf>,
}

/// The input of encrypt/decrypt, resolved: its bytes and the name that decides its format
/// and creation rule.
pub(crate) struct Input {
    pub(crate) bytes: Vec<u8>,
    pub(crate) name: PathBuf,
    /// The file read, `None` for stdin.
    pub(crate) path: Option<PathBuf>,
}

/// Reads `file`, or stdin when `file` is `-` or absent; stdin needs a name for its format
/// (`name_override`) unless `typed` (an `--input-type` says it).
pub(crate) fn read_input(
    file: Option<&Path>,
    name_override: Option<&Path>,
    typed: bool,
) -> Result<Input> {
    let file = file.filter(|f| *f != Path::new("-"));
    match (file, name_override) {
        (Some(f), o) => Ok(Input {
            bytes: read(f)?,
            name: o.unwrap_or(f).to_path_buf(),
            path: Some(f.to_path_buf()),
        }),
        (None, o) if o.is_some() || typed => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading stdin")?;
            Ok(Input {
                bytes,
                name: o.unwrap_or(Path::new("stdin")).to_path_buf(),
                path: None,
            })
        }
        (None, _) => bail!(
            "no file given and no --filename-override: pass a FILE, or pass \
             --filename-override NAME (or --input-type) to read stdin (NAME sets the format and \
             creation rule)"
        ),
    }
}

/// Where the result of encrypt/decrypt goes.
pub(crate) enum Dest {
    /// Printed.
    Stdout,
    /// Replaces the input file atomically.
    InPlace,
    /// A new file (created 0600; never overwritten).
    New(PathBuf),
}

/// Puts `bytes` where `dest` says.
pub(crate) fn deliver(dest: &Dest, input: &Input, bytes: &[u8]) -> Result<()> {
    match dest {
        Dest::Stdout => std::io::stdout().write_all(bytes)?,
        Dest::InPlace => {
            let Some(path) = &input.path else {
                bail!("--in-place needs a FILE; stdin cannot be rewritten");
            };
            write_atomic(path, bytes)?;
        }
        Dest::New(p) => write_new_private(p, bytes)?,
    }
    Ok(())
}

/// The loud warning of `--ignore-mac`.
pub(crate) fn warn_ignore_mac(name: &Path) {
    eprintln!(
        "WARNING: --ignore-mac: the MAC of {} is NOT checked. Values may have been \
         removed, added or swapped since it was encrypted; use this output only to \
         recover the file, then encrypt it again.",
        name.display()
    );
}

/// What `exec-env` and `exec-file` run.
#[derive(Args)]
pub struct ExecArgs {
    /// The SOPS file.
    file: PathBuf,
    /// The command, after `--` (joined with spaces and run by `/bin/sh -c`, as sops does).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
    /// Input format (default: from the file extension).
    #[arg(long, value_enum)]
    input_type: Option<InputType>,
    #[command(flatten)]
    ids: IdentityArgs,
}

impl ExecArgs {
    /// Opens the file; returns the document and the command line.
    fn open(&self) -> Result<(OpenDoc, String)> {
        let ids = Identities::from_env(&self.ids.identity)?;
        let src = read(&self.file)?;
        let doc = open(
            &src,
            format_of(&self.file, self.input_type),
            Unlock::Identities(&ids),
        )
        .with_context(|| format!("{}", self.file.display()))?;
        Ok((doc, self.command.join(" ")))
    }
}

/// The `secrets` subcommands.
#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Encrypt a plaintext file (recipients from --age or the matching .sops.yaml creation rule).
    Encrypt {
        /// The plaintext file (`-` or none: stdin, with --filename-override).
        file: Option<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
        /// Encrypt in place instead of printing to stdout.
        #[arg(short = 'i', long = "in-place")]
        in_place: bool,
        /// age recipient(s), comma-separated or repeated.
        #[arg(long = "age", value_name = "RECIPIENT")]
        age: Vec<String>,
        /// Encrypt only values whose key matches this regex.
        #[arg(long, group = "rule")]
        encrypted_regex: Option<String>,
        /// Leave values whose key matches this regex in the clear.
        #[arg(long, group = "rule")]
        unencrypted_regex: Option<String>,
        /// Encrypt only values whose key ends with this suffix.
        #[arg(long, group = "rule")]
        encrypted_suffix: Option<String>,
        /// Leave values whose key ends with this suffix in the clear (default `_unencrypted`).
        #[arg(long, group = "rule")]
        unencrypted_suffix: Option<String>,
        /// Compute the MAC over encrypted values only.
        #[arg(long)]
        mac_only_encrypted: bool,
        /// Input format (default: from the file extension).
        #[arg(long, value_enum)]
        input_type: Option<InputType>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Decrypt a SOPS file to stdout or to a new 0600 file.
    Decrypt {
        /// The SOPS file (`-` or none: stdin, with --filename-override).
        file: Option<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
        /// Do not check the MAC (recovery only: a loud warning; each value must still decrypt).
        #[arg(long)]
        ignore_mac: bool,
        /// Write the plaintext to this new file (created 0600; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Input format (default: from the file extension).
        #[arg(long, value_enum)]
        input_type: Option<InputType>,
        #[command(flatten)]
        ids: IdentityArgs,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Set one value, as `sops set`: '["a"]["b"]' and a JSON value; missing keys are created.
    Set {
        /// The SOPS file (rewritten atomically; comments and layout elsewhere kept).
        file: PathBuf,
        /// Where, in sops's index syntax: '["key"]["list"][0]'.
        path: String,
        /// The value, as JSON: '"text"', '5', '{"k": [1, 2]}'.
        value: String,
        #[command(flatten)]
        daily: DailyArgs,
    },
    /// Remove one value, as `sops unset`; a missing path is an error.
    Unset {
        /// The SOPS file (rewritten atomically; comments and layout elsewhere kept).
        file: PathBuf,
        /// Where, in sops's index syntax: '["key"]["list"][0]'.
        path: String,
        #[command(flatten)]
        daily: DailyArgs,
    },
    /// Edit a SOPS file in $VISUAL/$EDITOR, as `sops edit` (a new file gets its creation rule's recipients).
    Edit {
        /// The SOPS file (rewritten atomically only when the plaintext changed).
        file: PathBuf,
        #[command(flatten)]
        daily: DailyArgs,
    },
    /// Print `{"encrypted":true}` or `{"encrypted":false}` for one file, as `sops filestatus`.
    Filestatus {
        /// The file (`-` or none: stdin, with --filename-override).
        file: Option<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
        /// Input format (default: from the file extension).
        #[arg(long, value_enum)]
        input_type: Option<InputType>,
    },
    /// Run a command with the flat file's keys in its environment (`sops exec-env`); exits with
    /// the command's status.
    ExecEnv {
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Run a command with `{}` replaced by the path of the plaintext, behind a FIFO or in a 0600
    /// temporary file, removed when the command ends (`sops exec-file`); exits with its status.
    ExecFile {
        #[command(flatten)]
        exec: ExecArgs,
        /// A 0600 temporary file instead of a FIFO (for commands that read the file twice or seek).
        #[arg(long)]
        no_fifo: bool,
    },
    /// Make each file's recipients match its .sops.yaml rule (re-wraps the data key only).
    Updatekeys {
        /// Files or directory trees.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Apply without asking.
        #[arg(short = 'y', long)]
        yes: bool,
        #[command(flatten)]
        ids: IdentityArgs,
        #[command(flatten)]
        tree: TreeArgs,
        /// Hooks file (event secrets_rotated: pre hooks can veto, post hooks get the changed files).
        #[arg(long, value_name = "FILE")]
        hooks: Option<PathBuf>,
    },
    /// New data key for each file; every value re-encrypted.
    Rotate {
        /// Files or directory trees.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Add an age recipient (to the first key group).
        #[arg(long = "add-age", value_name = "RECIPIENT")]
        add_age: Vec<String>,
        /// Remove an age recipient.
        #[arg(long = "rm-age", value_name = "RECIPIENT")]
        rm_age: Vec<String>,
        #[command(flatten)]
        ids: IdentityArgs,
        #[command(flatten)]
        tree: TreeArgs,
        /// Hooks file (event secrets_rotated: pre hooks can veto, post hooks get the changed files).
        #[arg(long, value_name = "FILE")]
        hooks: Option<PathBuf>,
    },
    /// Check that every file decrypts, its MAC holds and its recipients match its rule; a file
    /// a creation rule covers (or named `*.sops.*`) without SOPS metadata fails as not encrypted.
    Verify {
        /// Files or directory trees.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        ids: IdentityArgs,
        #[command(flatten)]
        tree: TreeArgs,
    },
}

/// age recipients from comma-separated lists (`--age`, `--add-age`).
pub(crate) fn recipients(args: &[String]) -> Result<Vec<AgeRecipient>> {
    Ok(args
        .iter()
        .map(|a| AgeRecipient::parse_list(a))
        .collect::<Result<Vec<_>, _>>()?
        .concat())
}

/// Recipients to remove, from comma-separated lists (`--rm-age`), as text.
pub(crate) fn recipient_texts(args: &[String]) -> Vec<String> {
    args.iter()
        .flat_map(|r| r.split(',').map(|s| s.trim().to_string()))
        .collect()
}

fn format_of(file: &Path, t: Option<InputType>) -> FileFormat {
    request_format(file, t.map(FileFormat::from))
}

/// Runs a `secrets` subcommand; returns the exit status.
pub fn run(cmd: SecretsCommand) -> Result<i32> {
    match cmd {
        SecretsCommand::Encrypt {
            file,
            input,
            in_place,
            age,
            encrypted_regex,
            unencrypted_regex,
            encrypted_suffix,
            unencrypted_suffix,
            mac_only_encrypted,
            input_type,
            output,
        } => {
            let input = read_input(
                file.as_deref(),
                input.filename_override.as_deref(),
                input_type.is_some(),
            )?;
            let req = EncryptRequest {
                input_format: format_of(&input.name, input_type),
                output_format: output.output_type.map(FileFormat::from),
                age: recipients(&age)?,
                rules: Rules {
                    encrypted_regex,
                    unencrypted_regex,
                    encrypted_suffix,
                    unencrypted_suffix,
                    mac_only_encrypted,
                },
                config: config_near(&input.name),
            };
            let out = encrypt_named(&input.bytes, &input.name, &req)
                .with_context(|| format!("{}", input.name.display()))?;
            let dest = if in_place {
                Dest::InPlace
            } else {
                Dest::Stdout
            };
            deliver(&dest, &input, &out)?;
            Ok(0)
        }
        SecretsCommand::Decrypt {
            file,
            input,
            ignore_mac,
            out,
            input_type,
            ids,
            view,
        } => {
            let ids = Identities::from_env(&ids.identity)?;
            let input = read_input(
                file.as_deref(),
                input.filename_override.as_deref(),
                input_type.is_some(),
            )?;
            let req = view.request(ignore_mac, input_type)?;
            let fmt = request_format(&input.name, req.input_format);
            if ignore_mac {
                warn_ignore_mac(&input.name);
            }
            let doc = req
                .open(&input.bytes, fmt, &ids)
                .with_context(|| format!("{}", input.name.display()))?;
            let plain = req.render(&doc)?;
            let dest = out.map_or(Dest::Stdout, Dest::New);
            deliver(&dest, &input, &plain)?;
            Ok(0)
        }
        SecretsCommand::Filestatus {
            file,
            input,
            input_type,
        } => {
            let input = read_input(
                file.as_deref(),
                input.filename_override.as_deref(),
                input_type.is_some(),
            )?;
            let st = file_status(&input.bytes, format_of(&input.name, input_type))
                .with_context(|| format!("{}", input.name.display()))?;
            out!("{}", serde_json::to_string(&st)?);
            Ok(0)
        }
        SecretsCommand::ExecEnv { exec } => {
            let (doc, cmd) = exec.open()?;
            Ok(exec_env(&doc, &cmd, false)?)
        }
        SecretsCommand::ExecFile { exec, no_fifo } => {
            let (doc, cmd) = exec.open()?;
            let mode = if no_fifo {
                FileMode::TempFile
            } else {
                FileMode::Fifo
            };
            Ok(exec_file(&doc.plaintext()?, &cmd, mode, DEFAULT_FILE_NAME)?)
        }
        SecretsCommand::Set {
            file,
            path,
            value,
            daily,
        } => {
            let value = Node::parse(value.as_bytes(), FileFormat::Json)
                .context("the value must be JSON, e.g. '\"text\"', '5' or '{\"k\": 1}'")?;
            change_file(&file, daily, Change::Set(parse_path(&path)?, value))
        }
        SecretsCommand::Unset { file, path, daily } => {
            change_file(&file, daily, Change::Unset(parse_path(&path)?))
        }
        SecretsCommand::Edit { file, daily } => {
            let ids = Identities::from_env(&daily.ids.identity)?;
            let fmt = format_of(&file, daily.input_type);
            match edit_file(&file, fmt, &ids, &mut TerminalEditor)
                .with_context(|| format!("{}", file.display()))?
            {
                EditOutcome::Saved => eprintln!("{}: saved", file.display()),
                EditOutcome::Unchanged => {
                    eprintln!("{}: no change, file not rewritten", file.display())
                }
            }
            Ok(0)
        }
        SecretsCommand::Updatekeys {
            paths,
            yes,
            ids,
            tree,
            hooks,
        } => {
            let ids = Identities::from_env(&ids.identity)?;
            let opts = TreeOptions {
                progress: !tree.json,
                jobs: tree.jobs,
                clean_stale: true,
                plaintext_fails: false,
            };
            let mut apply = yes;
            if !yes {
                let plan = run_tree(&paths, &opts, |p, b| updatekeys_file(p, b, &ids, false))?;
                let pending: Vec<_> = plan
                    .files
                    .iter()
                    .filter(|f| f.status == Status::Pending)
                    .collect();
                for f in &pending {
                    eprintln!("{}: {}", f.path.display(), f.problems.join("; "));
                }
                if pending.is_empty() {
                    return Ok(report("updatekeys", &plan, tree.json));
                }
                if !std::io::stdin().is_terminal() {
                    bail!(
                        "{} file(s) would change; pass --yes to apply without a prompt",
                        pending.len()
                    );
                }
                eprint!("Update the keys of {} file(s)? [y/N] ", pending.len());
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                apply = answer.trim().eq_ignore_ascii_case("y");
                if !apply {
                    eprintln!("nothing changed");
                    return Ok(1);
                }
            }
            let s = with_hooks(hooks.as_deref(), "updatekeys", &paths, || {
                run_tree(&paths, &opts, |p, b| updatekeys_file(p, b, &ids, apply))
            })?;
            Ok(report("updatekeys", &s, tree.json))
        }
        SecretsCommand::Rotate {
            paths,
            add_age,
            rm_age,
            ids,
            tree,
            hooks,
        } => {
            let ids = Identities::from_env(&ids.identity)?;
            let add = recipients(&add_age)?;
            let rm = recipient_texts(&rm_age);
            let opts = TreeOptions {
                progress: !tree.json,
                jobs: tree.jobs,
                clean_stale: true,
                plaintext_fails: false,
            };
            let s = with_hooks(hooks.as_deref(), "rotate", &paths, || {
                run_tree(&paths, &opts, |p, b| rotate_file(p, b, &ids, &add, &rm))
            })?;
            Ok(report("rotate", &s, tree.json))
        }
        SecretsCommand::Verify { paths, ids, tree } => {
            let ids = Identities::from_env(&ids.identity)?;
            let opts = TreeOptions {
                progress: !tree.json,
                jobs: tree.jobs,
                clean_stale: false,
                plaintext_fails: true,
            };
            let s = run_tree(&paths, &opts, |p, b| verify_file(p, b, &ids))?;
            if !tree.json {
                let mut by_recipient: std::collections::BTreeMap<&str, Vec<&Path>> =
                    Default::default();
                for f in &s.files {
                    for r in &f.recipients {
                        by_recipient.entry(r.as_str()).or_default().push(&f.path);
                    }
                }
                for (r, files) in &by_recipient {
                    out!("{r} can open {} file(s):", files.len());
                    for f in files {
                        out!("    {}", f.display());
                    }
                }
            }
            Ok(report("verify", &s, tree.json))
        }
    }
}

/// Runs a tree operation between the `secrets_rotated` hooks: a pre hook can veto before any
/// file is touched; post hooks learn which files changed (paths only).
fn with_hooks(
    hooks: Option<&Path>,
    op: &str,
    paths: &[PathBuf],
    run: impl FnOnce() -> std::result::Result<Summary, SopsError>,
) -> Result<Summary> {
    use kiwi_signer::hooks::{EventData, EventKind, Hooks};
    let hooks = match hooks {
        Some(p) => Hooks::load(p)?,
        None => Hooks::none(),
    };
    let mut data = EventData::default();
    data.details.insert("operation".into(), op.into());
    for p in paths {
        crate::add_file(&mut data, "repo", p);
    }
    hooks.run_pre(crate::TOOL, EventKind::SecretsRotated, &data)?;
    let s = run()?;
    for f in s.files.iter().filter(|f| f.status == Status::Changed) {
        crate::add_file(&mut data, "changed", &f.path);
    }
    data.details.insert("changed".into(), s.changed.to_string());
    data.details.insert("failed".into(), s.failed.to_string());
    crate::post(&hooks, EventKind::SecretsRotated, &data);
    Ok(s)
}

fn report(op: &str, s: &Summary, json: bool) -> i32 {
    if json {
        out!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
    } else {
        for f in &s.files {
            if let Some(e) = &f.error {
                eprintln!("FAILED {}: {e}", f.path.display());
            }
            for p in &f.problems {
                eprintln!("NOT CONFORMING {}: {p}", f.path.display());
            }
        }
        if s.stale_temps_removed > 0 {
            out!(
                "{op}: removed {} temporary file(s) left by an interrupted run",
                s.stale_temps_removed
            );
        }
        out!(
            "{op}: {} changed, {} skipped, {} failed, {} not conforming ({} files)",
            s.changed,
            s.skipped,
            s.failed,
            s.nonconforming,
            s.files.len()
        );
    }
    i32::from(!s.ok())
}
