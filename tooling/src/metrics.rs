//! Prometheus metrics in node_exporter's textfile-collector format, for scheduled checks.
//!
//! The root is offline, so nothing pages an operator when its CRL nears nextUpdate unless a job
//! checks it. A cron job runs `kiwictl crl check --prometheus FILE` into node_exporter's
//! `--collector.textfile.directory`, and alert rules (README) page long before relying parties
//! start rejecting the CRL.
//!
//! The file is replaced atomically (a new temporary file beside it, fsync, rename, fsync of the
//! directory: `kiwi_signer::fsutil::replace_atomically`), so node_exporter never reads half a
//! file, and a crash (SIGKILL or power loss) leaves either the previous complete file or the new
//! one.

use std::fmt::Write as _;
use std::path::Path;

use kiwi_signer::fsutil::{self, Mode};

/// One gauge and its samples.
#[derive(Debug, Clone)]
pub struct Gauge {
    /// Metric name (`kiwi_crl_next_update_seconds`).
    pub name: &'static str,
    /// One line of help text.
    pub help: &'static str,
    /// Label sets and values.
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Gauge {
    /// A gauge with one sample.
    pub fn one(
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) -> Self {
        Gauge {
            name,
            help,
            samples: vec![(labels, value)],
        }
    }
}

/// Escapes a label value as the exposition format requires (backslash, double quote, newline).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Renders gauges in the text exposition format (version 0.0.4).
pub fn render(gauges: &[Gauge]) -> String {
    let mut s = String::new();
    for g in gauges {
        // Writing to a String cannot fail.
        let _ = writeln!(s, "# HELP {} {}", g.name, g.help);
        let _ = writeln!(s, "# TYPE {} gauge", g.name);
        for (labels, value) in &g.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = if labels.is_empty() {
                writeln!(s, "{} {value}", g.name)
            } else {
                writeln!(s, "{}{{{}}} {value}", g.name, labels.join(","))
            };
        }
    }
    s
}

/// Writes `gauges` to `path`, replacing the previous file atomically (world-readable: metrics
/// hold no secrets, and node_exporter usually runs as another user).
pub fn write(path: &Path, gauges: &[Gauge]) -> Result<(), kiwi_signer::Error> {
    fsutil::replace_atomically(path, render(gauges).as_bytes(), Mode::Public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_exposition_format_with_escaped_labels() {
        let g = vec![
            Gauge::one(
                "kiwi_x",
                "An example.",
                vec![("crl", "a\"b\\c\nd".into())],
                -1.5,
            ),
            Gauge::one("kiwi_y", "Another.", vec![], 3.0),
        ];
        assert_eq!(
            render(&g),
            "# HELP kiwi_x An example.\n# TYPE kiwi_x gauge\nkiwi_x{crl=\"a\\\"b\\\\c\\nd\"} -1.5\n\
             # HELP kiwi_y Another.\n# TYPE kiwi_y gauge\nkiwi_y 3\n"
        );
    }

    #[test]
    fn write_replaces_the_previous_file_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("kiwi.prom");
        write(&p, &[Gauge::one("kiwi_a", "A.", vec![], 1.0)]).expect("first");
        write(&p, &[Gauge::one("kiwi_b", "B.", vec![], 2.0)]).expect("second");
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(
            text.contains("kiwi_b 2") && !text.contains("kiwi_a"),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != "kiwi.prom")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}
