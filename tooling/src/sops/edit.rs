//! `kiwictl secrets edit`: the plaintext in a private temporary file, the user's editor on it,
//! and the file encrypted again when it changed, as `sops edit` does.
//!
//! The temporary file is created 0600 (`create_new`) in `$XDG_RUNTIME_DIR` or `/dev/shm`
//! (memory, not disk); with neither, the edit is refused rather than put plaintext on a disk.
//! It is overwritten with zeros and removed on every path out of [`edit_file`]: success, no
//! change, invalid syntax given up, editor failure, and Ctrl-C/SIGTERM/SIGHUP, which the
//! process outlives while the editor runs (the editor gets the signal too). Only a SIGKILL
//! of kiwictl itself can leave the file, in memory-backed storage until the next reboot.
//! The SOPS file is replaced atomically ([`write_atomic`]): a crash leaves the old or the new.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::agekeys::Identities;
use super::config::rule_for_file;
use super::engine::{encrypt, open, KeySpec, Unlock};
use super::error::{Result, SopsError};
use super::files::{read, write_atomic};
use super::format::{self, FileFormat};
use super::metadata::Rules;
use super::tree::spec_of;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file was written with the edited content.
    Saved,
    /// The plaintext did not change; the file was not touched.
    Unchanged,
}

/// How the editor is run and what to do with invalid syntax.
pub trait EditCallbacks {
    /// Runs the editor on `path`; `Ok(true)` when it exited successfully.
    fn edit(&mut self, path: &Path) -> std::io::Result<bool>;
    /// The edited text does not parse (`why`): `true` to reopen the editor, `false` to give up.
    fn reopen(&mut self, why: &str) -> bool;
}

/// The directory for the plaintext: `$XDG_RUNTIME_DIR`, else `/dev/shm`.
pub fn private_dir() -> Result<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .ok_or_else(|| {
            SopsError::Edit(
                "neither $XDG_RUNTIME_DIR nor /dev/shm exists, and the plaintext must not go to \
                 a disk; set XDG_RUNTIME_DIR to a memory-backed directory (tmpfs)"
                    .into(),
            )
        })
}

/// The plaintext file: 0600, wiped and removed on drop.
struct PlainTemp {
    path: PathBuf,
}

impl PlainTemp {
    fn create(dir: &Path, ext: &str, bytes: &[u8]) -> Result<PlainTemp> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut last = None;
        for _ in 0..16 {
            let mut n = [0u8; 8];
            OsRng.fill_bytes(&mut n);
            let path = dir.join(format!("kiwictl-edit-{}.{ext}", hex::encode(n)));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    let t = PlainTemp { path };
                    f.write_all(bytes).map_err(|e| io_err(&t.path, e))?;
                    f.sync_all().map_err(|e| io_err(&t.path, e))?;
                    return Ok(t);
                }
                Err(e) => last = Some(io_err(&path, e)),
            }
        }
        Err(last.unwrap_or_else(|| SopsError::Edit("no temporary file".into())))
    }
}

impl Drop for PlainTemp {
    fn drop(&mut self) {
        if let Ok(md) = std::fs::metadata(&self.path) {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                let zeros = vec![0u8; usize::try_from(md.len()).unwrap_or(0)];
                let _ = f.write_all(&zeros).and_then(|()| f.sync_all());
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn io_err(path: &Path, source: std::io::Error) -> SopsError {
    SopsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Edits the SOPS file at `path` (a new file gets the recipients of its `.sops.yaml` creation
/// rule): decrypts into a private temporary file, runs the editor, and when the plaintext
/// changed and parses, encrypts it again and replaces the file.
pub fn edit_file(
    path: &Path,
    fmt: FileFormat,
    ids: &Identities,
    cb: &mut dyn EditCallbacks,
) -> Result<Outcome> {
    let (plain, spec, rules): (Zeroizing<Vec<u8>>, KeySpec, Rules) = if path.exists() {
        let doc = open(&read(path)?, fmt, Unlock::Identities(ids))?;
        (doc.plaintext()?, spec_of(&doc)?, doc.meta.rules.clone())
    } else {
        let rule = rule_for_file(path)?.ok_or(SopsError::NoRecipients)?;
        (Zeroizing::new(Vec::new()), rule.keys, rule.rules)
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut hooks = Vec::new();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        hooks.push(
            signal_hook::flag::register(sig, Arc::clone(&interrupted))
                .map_err(|e| SopsError::Edit(format!("cannot catch signals: {e}")))?,
        );
    }
    let result = (|| {
        let temp = PlainTemp::create(&private_dir()?, fmt.name(), &plain)?;
        loop {
            let ok = cb
                .edit(&temp.path)
                .map_err(|e| SopsError::Edit(format!("cannot run the editor: {e}")))?;
            if interrupted.load(Ordering::SeqCst) {
                return Err(SopsError::Edit("interrupted; the file is unchanged".into()));
            }
            if !ok {
                return Err(SopsError::Edit(
                    "the editor failed; the file is unchanged".into(),
                ));
            }
            let edited = Zeroizing::new(read(&temp.path)?);
            if edited[..] == plain[..] {
                return Ok(Outcome::Unchanged);
            }
            let check = if fmt == FileFormat::Binary {
                Ok(())
            } else {
                format::parse(fmt, &edited).and_then(|p| match p.meta {
                    Some(_) => Err(SopsError::AlreadyEncrypted),
                    None => Ok(()),
                })
            };
            match check.and_then(|()| encrypt(&edited, fmt, &spec, rules.clone())) {
                Ok(out) => {
                    write_atomic(path, &out)?;
                    return Ok(Outcome::Saved);
                }
                Err(e) => {
                    if !cb.reopen(&e.to_string()) {
                        return Err(SopsError::Edit(format!("{e}; the file is unchanged")));
                    }
                }
            }
        }
    })();
    for h in hooks {
        signal_hook::low_level::unregister(h);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use crate::sops::agekeys::AgeRecipient;
    use age::secrecy::ExposeSecret;

    /// Writes each text in turn into the temp file; answers `reopen` with `again`.
    struct Script {
        texts: Vec<&'static str>,
        seen: Vec<PathBuf>,
        reopened: usize,
        again: bool,
    }

    impl EditCallbacks for Script {
        fn edit(&mut self, path: &Path) -> std::io::Result<bool> {
            self.seen.push(path.to_path_buf());
            std::fs::write(path, self.texts.remove(0))?;
            Ok(true)
        }
        fn reopen(&mut self, _why: &str) -> bool {
            self.reopened += 1;
            self.again
        }
    }

    #[test]
    fn invalid_text_reopens_then_saves_and_the_temp_file_goes() {
        let id = age::x25519::Identity::generate();
        let mut ids = Identities::empty();
        ids.add_text(id.to_string().expose_secret(), "test")
            .unwrap();
        let spec = KeySpec::single(vec![
            AgeRecipient::parse(&id.to_public().to_string()).unwrap()
        ]);
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s.yaml");
        let enc = encrypt(b"a: 1\n", FileFormat::Yaml, &spec, Rules::default()).unwrap();
        std::fs::write(&f, &enc).unwrap();

        let mut give_up = Script {
            texts: vec!["a: [x\n"],
            seen: vec![],
            reopened: 0,
            again: false,
        };
        assert!(edit_file(&f, FileFormat::Yaml, &ids, &mut give_up).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), enc);
        assert!(!give_up.seen[0].exists());

        let mut cb = Script {
            texts: vec!["a: [x\n", "a: 2\n"],
            seen: vec![],
            reopened: 0,
            again: true,
        };
        assert_eq!(
            edit_file(&f, FileFormat::Yaml, &ids, &mut cb).unwrap(),
            Outcome::Saved
        );
        assert_eq!(cb.reopened, 1);
        assert!(!cb.seen[0].exists());
        let doc = open(
            &std::fs::read(&f).unwrap(),
            FileFormat::Yaml,
            Unlock::Identities(&ids),
        );
        assert_eq!(&doc.unwrap().plaintext().unwrap()[..], b"a: 2\n");
    }
}
