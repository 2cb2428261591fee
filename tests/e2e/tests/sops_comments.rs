//! Comments in files kiwictl encrypts land under the key paths the real sops reads them with:
//! generated documents (nested mappings and lists, comments before, between and after entries
//! at the columns of the collections around them, comments after values) are encrypted by
//! kiwictl and decrypted by `sops -d`, which must give back the comments it keeps when it
//! encrypts the document itself, and leave no ciphertext; sops warns and keeps `ENC[...]` for a
//! comment under another path. The same files rotated by kiwictl stay readable by sops, and
//! kiwictl decrypts sops's own encryption of each document to the bytes `sops -d` prints.

use std::path::Path;

use kiwi_e2e::sops::*;

/// A small deterministic generator (xorshift) of block YAML with comments.
struct Gen {
    state: u64,
    comments: usize,
    open: Vec<usize>,
}

impl Gen {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Zero or more whole-line comments, each at the column of one of the open collections.
    fn comments(&mut self, out: &mut Vec<String>) {
        while self.chance(35) {
            let at = (self.next() % self.open.len() as u64) as usize;
            let col = self.open[at];
            self.comments += 1;
            out.push(format!("{}# c{}", " ".repeat(col), self.comments));
        }
    }

    fn mapping(&mut self, col: usize, depth: u32, out: &mut Vec<String>) {
        self.open.push(col);
        for _ in 0..1 + self.next() % 3 {
            self.comments(out);
            let key = format!("k{}", self.next() % 1000);
            let pad = " ".repeat(col);
            match self.next() % 100 {
                r if depth > 0 && r < 35 => {
                    out.push(format!("{pad}{key}:"));
                    self.mapping(col + 2, depth - 1, out);
                }
                r if depth > 0 && r < 60 => {
                    out.push(format!("{pad}{key}:"));
                    self.sequence(col + 2, depth - 1, out);
                }
                r if r < 70 => {
                    self.comments += 1;
                    out.push(format!("{pad}{key}: v # after {}", self.comments));
                }
                _ => out.push(format!("{pad}{key}: v")),
            }
        }
        self.open.pop();
    }

    fn sequence(&mut self, col: usize, depth: u32, out: &mut Vec<String>) {
        self.open.push(col);
        for _ in 0..1 + self.next() % 3 {
            self.comments(out);
            let pad = " ".repeat(col);
            if depth > 0 && self.chance(30) {
                out.push(format!("{pad}- a: 1"));
                self.mapping(col + 2, depth - 1, out);
            } else {
                out.push(format!("{pad}- x"));
            }
        }
        self.open.pop();
    }

    fn document(&mut self) -> String {
        let mut out = Vec::new();
        self.open.push(0);
        self.mapping(0, 3, &mut out);
        self.comments(&mut out);
        self.open.pop();
        out.join("\n") + "\n"
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

/// The comments `sops -d` prints for `file`, sorted; fails when sops leaves ciphertext or warns
/// (it does both for a comment it finds under another path than it reads it with).
fn sops_comments(file: &Path, what: &str, plain: &str) -> Vec<String> {
    let o = run(&sops_bin(), &["-d", p(file)], Some("test1"), None);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{what}: sops -d failed: {err}\n{plain}");
    assert!(
        !out.contains("ENC[") && err.is_empty(),
        "{what}: sops could not read a comment:\n{err}\n--- plaintext:\n{plain}--- sops -d:\n{out}"
    );
    // sops files a comment under its path but may print it elsewhere among its neighbours.
    let mut c = comments(&o.stdout);
    c.sort();
    c
}

#[test]
fn sops_reads_every_comment_of_generated_documents_kiwictl_encrypts_and_rotates() {
    let kiwi = kiwictl_bin();
    let d = tempfile::tempdir().expect("tempdir");
    let r1 = recipient("test1");
    let mut g = Gen {
        state: 0x2545_f491_4f6c_dd1d,
        comments: 0,
        open: Vec::new(),
    };
    let mut total = 0;
    for i in 0..60 {
        let plain = g.document();
        let src = d.path().join(format!("doc{i}.yaml"));
        std::fs::write(&src, &plain).expect("write");
        // What sops keeps of the comments when it encrypts the document itself (it drops a
        // few that yaml.v3 attaches nowhere).
        let theirs = d.path().join(format!("doc{i}.sops.yaml"));
        std::fs::write(
            &theirs,
            ok(&sops_bin(), &["encrypt", "--age", &r1, p(&src)], None),
        )
        .expect("write");
        let want = sops_comments(&theirs, &format!("doc{i} by sops"), &plain);
        // kiwictl reads sops's file to the very bytes sops prints.
        assert_eq!(
            String::from_utf8_lossy(&ok(
                &kiwi,
                &["secrets", "decrypt", p(&theirs)],
                Some("test1")
            )),
            String::from_utf8_lossy(&ok(&sops_bin(), &["-d", p(&theirs)], Some("test1"))),
            "doc{i}: kiwictl decrypt of sops's file differs from sops -d\n{plain}"
        );
        let enc = ok(&kiwi, &["secrets", "encrypt", "--age", &r1, p(&src)], None);
        let f = d.path().join(format!("doc{i}.enc.yaml"));
        std::fs::write(&f, enc).expect("write");
        assert_eq!(
            sops_comments(&f, &format!("doc{i} encrypted"), &plain),
            want,
            "doc{i}: comments differ\n{plain}"
        );
        ok(&kiwi, &["secrets", "rotate", p(&f)], Some("test1"));
        assert_eq!(
            sops_comments(&f, &format!("doc{i} rotated"), &plain),
            want,
            "doc{i} rotated: comments differ\n{plain}"
        );
        total += comments(plain.as_bytes()).len();
    }
    assert!(total > 200, "only {total} comments were generated");
}
