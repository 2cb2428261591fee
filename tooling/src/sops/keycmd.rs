//! `SOPS_AGE_KEY_CMD`: identities printed by a command, as sops 3.11 runs it. The variable is
//! split into words like sops' `shlex.Split` (no shell), the first word is run with stdin from
//! `/dev/null`, and its stdout is read as an identity file. The command gets our environment
//! minus `SOPS_AGE_KEY`: an inline key is a secret it has no need of.

use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::error::{Result, SopsError};

/// The environment variable that names the command.
pub const KEY_CMD_ENV: &str = "SOPS_AGE_KEY_CMD";

/// Runs `command` and returns what it printed on stdout (zeroized on drop).
pub fn run_key_command(command: &str) -> Result<Zeroizing<String>> {
    let fail = |detail: String| SopsError::KeyCommand {
        command: command.to_string(),
        detail,
    };
    let words = split_words(command).map_err(|d| fail(d.to_string()))?;
    let (prog, args) = words
        .split_first()
        .ok_or_else(|| fail("the command is empty".into()))?;
    let out = Command::new(prog)
        .args(args)
        .env_remove("SOPS_AGE_KEY")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run `{prog}`: {e}")))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(fail(format!("it exited with {}", out.status)));
    }
    let text = std::str::from_utf8(&stdout).map_err(|_| fail("its output is not UTF-8".into()))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Splits a command line into words the way Go's `github.com/google/shlex` does (what sops
/// uses): blanks separate words; `'…'` quotes literally; `"…"` quotes with `\` escaping the
/// next character; `\` outside quotes escapes the next character; `#` at the start of a word
/// begins a comment to the end of the line.
pub fn split_words(s: &str) -> std::result::Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            '#' if cur.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\\' => {
                let n = chars.next().ok_or("it ends with an escape `\\`")?;
                cur.get_or_insert_with(String::new).push(n);
            }
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a single quote is not closed"),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.push(chars.next().ok_or("a double quote is not closed")?),
                        Some(c) => w.push(c),
                        None => return Err("a double quote is not closed"),
                    }
                }
            }
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    Ok(words)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn splits_like_go_shlex() {
        assert_eq!(
            split_words(r#"cat "/a b/k.txt" 'x y' z\ w"#).unwrap(),
            vec!["cat", "/a b/k.txt", "x y", "z w"]
        );
        assert_eq!(split_words("a # comment\nb").unwrap(), vec!["a", "b"]);
        assert_eq!(split_words("a#b").unwrap(), vec!["a#b"]);
        assert!(split_words("'open").is_err());
        assert!(split_words("").unwrap().is_empty());
    }

    #[test]
    fn runs_without_a_shell_and_without_the_inline_key() {
        let out = run_key_command("sh -c 'printf %s \"${SOPS_AGE_KEY-unset}\"'").unwrap();
        assert_eq!(out.as_str(), "unset");
        let e = run_key_command("sh -c 'exit 3'").unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");
        let e = run_key_command("  ").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
