//! `kiwictl crl check`: is the root's published CRL valid, and how long until it expires?
//!
//! The root is offline and its CRL is re-issued only at ceremonies; an expired root CRL makes
//! every relying party that checks revocation fail. A scheduled job runs this check so that an
//! operator is paged long before the CRL's nextUpdate, not after.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;

use kiwi_signer::x509;

use crate::metrics::Gauge;

/// How a CRL stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Valid, and nextUpdate is further away than the warning margin.
    Ok,
    /// Valid, but nextUpdate falls within the warning margin: schedule a CRL ceremony.
    Due,
    /// nextUpdate has passed: relying parties reject it now.
    Expired,
    /// Not a CRL of this root, or its signature does not verify.
    Invalid,
}

/// The check's findings.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// What it means and what to do.
    pub message: String,
    /// CRL number, if readable.
    pub crl_number: Option<String>,
    /// thisUpdate (RFC 3339), if readable.
    pub this_update: Option<String>,
    /// nextUpdate (RFC 3339), if present.
    pub next_update: Option<String>,
    /// Whole days until nextUpdate (negative once expired).
    pub days_left: Option<i64>,
    /// Seconds until nextUpdate (negative once expired).
    pub seconds_left: Option<i64>,
    /// Number of revoked certificates listed.
    pub revoked: Option<usize>,
}

impl Report {
    fn invalid(message: String) -> Self {
        Report {
            verdict: Verdict::Invalid,
            message,
            crl_number: None,
            this_update: None,
            next_update: None,
            days_left: None,
            seconds_left: None,
            revoked: None,
        }
    }

    /// The report as Prometheus gauges, labelled with the CRL file's path: whether the CRL is
    /// valid (an invalid or unreadable CRL still yields `kiwi_crl_valid 0`, so alerts fire),
    /// seconds until nextUpdate, CRL number and revoked count where known, and when it was checked.
    pub fn gauges(&self, crl_label: &str, now: OffsetDateTime) -> Vec<Gauge> {
        let l = || vec![("crl", crl_label.to_string())];
        let valid = matches!(self.verdict, Verdict::Ok | Verdict::Due);
        let mut g = vec![Gauge::one(
            "kiwi_crl_valid",
            "1 when the root CRL is issued by the root, its signature verifies and nextUpdate has not passed.",
            l(),
            if valid { 1.0 } else { 0.0 },
        )];
        if let Some(s) = self.seconds_left {
            g.push(Gauge::one(
                "kiwi_crl_next_update_seconds",
                "Seconds until the root CRL's nextUpdate (negative once it has passed).",
                l(),
                s as f64,
            ));
        }
        if let Some(n) = self
            .crl_number
            .as_deref()
            .and_then(|n| n.parse::<f64>().ok())
        {
            g.push(Gauge::one(
                "kiwi_crl_number",
                "The root CRL's CRL number.",
                l(),
                n,
            ));
        }
        if let Some(r) = self.revoked {
            g.push(Gauge::one(
                "kiwi_crl_revoked_certificates",
                "Certificates the root CRL lists as revoked.",
                l(),
                r as f64,
            ));
        }
        g.push(Gauge::one(
            "kiwi_crl_check_timestamp_seconds",
            "When kiwictl crl check last ran (Unix time).",
            l(),
            now.unix_timestamp() as f64,
        ));
        g
    }
}

fn der_of(bytes: &[u8]) -> Vec<u8> {
    match pem::parse(bytes) {
        Ok(p) => p.into_contents(),
        Err(_) => bytes.to_vec(),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Checks `crl` against `root` at `now`; `warn_days` is the margin before nextUpdate that
/// already counts as due.
pub fn check(crl: &[u8], root: &[u8], warn_days: u32, now: OffsetDateTime) -> Report {
    let root_der = der_of(root);
    let root_cert = match x509::parse_cert(&root_der) {
        Ok(c) => c,
        Err(e) => return Report::invalid(format!("the root certificate is unreadable: {e}")),
    };
    let root_key = match x509::cert_key(&root_cert) {
        Ok(k) => k,
        Err(e) => return Report::invalid(format!("the root's key is unsupported: {e}")),
    };
    let crl_der = der_of(crl);
    let parsed = match x509::parse_crl(&crl_der) {
        Ok(c) => c,
        Err(e) => return Report::invalid(format!("not a CRL: {e}")),
    };
    if parsed.tbs_cert_list.issuer.as_raw() != root_cert.tbs_certificate.subject.as_raw() {
        return Report::invalid(format!(
            "the CRL's issuer ({}) is not the root ({}); fetch the CRL this root issued",
            parsed.tbs_cert_list.issuer, root_cert.tbs_certificate.subject
        ));
    }
    if let Err(e) = x509::verify_crl(&parsed, &root_key) {
        return Report::invalid(format!(
            "the CRL's signature does not verify with the root's key ({e}); it is forged or damaged"
        ));
    }
    let this_update = parsed.tbs_cert_list.this_update.to_datetime();
    let next_update = parsed.tbs_cert_list.next_update.map(|t| t.to_datetime());
    let mut report = Report {
        verdict: Verdict::Ok,
        message: String::new(),
        crl_number: parsed.crl_number().map(|n| n.to_string()),
        this_update: Some(rfc3339(this_update)),
        next_update: next_update.map(rfc3339),
        days_left: None,
        seconds_left: None,
        revoked: Some(parsed.iter_revoked_certificates().count()),
    };
    let Some(next) = next_update else {
        report.verdict = Verdict::Invalid;
        report.message = "the CRL has no nextUpdate (RFC 5280 requires it)".into();
        return report;
    };
    if this_update > now + time::Duration::minutes(5) {
        report.verdict = Verdict::Invalid;
        report.message = format!(
            "thisUpdate {} is in the future; check this machine's clock",
            rfc3339(this_update)
        );
        return report;
    }
    let left = next - now;
    let days = left.whole_days();
    report.days_left = Some(days);
    report.seconds_left = Some(left.whole_seconds());
    if left.is_negative() {
        report.verdict = Verdict::Expired;
        report.message = format!(
            "EXPIRED {} days ago (nextUpdate {}): relying parties reject it; hold a CRL ceremony now (kiwi-signer crl)",
            -days,
            rfc3339(next)
        );
    } else if left <= time::Duration::days(i64::from(warn_days)) {
        report.verdict = Verdict::Due;
        report.message = format!(
            "due: expires in {days} days (nextUpdate {}), within the {warn_days}-day margin; schedule a CRL ceremony (kiwi-signer crl)",
            rfc3339(next)
        );
    } else {
        report.message = format!("valid for {days} more days (nextUpdate {})", rfc3339(next));
    }
    report
}

/// Reads the two files and checks them; a file that cannot be read makes the CRL invalid (named
/// in the message), so a monitoring job still reports it.
pub fn check_files(crl: &Path, root: &Path, warn_days: u32, now: OffsetDateTime) -> Report {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| {
            format!(
                "cannot read the {what} {}: {e}; check the path the job is given",
                p.display()
            )
        })
    };
    match (read(crl, "CRL"), read(root, "root certificate")) {
        (Ok(crl), Ok(root)) => check(&crl, &root, warn_days, now),
        (Err(m), _) | (_, Err(m)) => Report::invalid(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiwi_signer::callbacks::Scripted;

    fn ca_with_crl(tmp: &Path, now: OffsetDateTime) -> (Vec<u8>, Vec<u8>) {
        let cb = Scripted {
            confirm: true,
            secret: "unit test passphrase".into(),
        };
        let dir = tmp.join("ca");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/root.yaml");
        let c = kiwi_signer::ceremony::Ceremony::new(&cb, now);
        let soft = kiwi_signer::ceremony::init::BackendSpec::soft();
        kiwi_signer::ceremony::init(&dir, &policy, &soft, &c).expect("init");
        let crl = kiwi_signer::ceremony::crl::Crl {
            out: tmp.join("crl.pem"),
        };
        kiwi_signer::ceremony::run(&dir, &crl, &c).expect("crl");
        (
            std::fs::read(tmp.join("crl.pem")).expect("crl"),
            std::fs::read(dir.join("root.pem")).expect("root"),
        )
    }

    #[test]
    fn verdicts_follow_the_calendar_and_the_signature() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let (crl, root) = ca_with_crl(tmp.path(), now);
        let r = check(&crl, &root, 30, now);
        assert_eq!(r.verdict, Verdict::Ok, "{}", r.message);
        assert_eq!(r.crl_number.as_deref(), Some("1"));
        // The shipped policy gives 180 days.
        assert!(matches!(r.days_left, Some(179 | 180)), "{:?}", r.days_left);
        let prom = crate::metrics::render(&r.gauges("/pub/crl.pem", now));
        assert!(
            prom.contains("kiwi_crl_valid{crl=\"/pub/crl.pem\"} 1\n"),
            "{prom}"
        );
        assert!(
            prom.contains("kiwi_crl_number{crl=\"/pub/crl.pem\"} 1\n"),
            "{prom}"
        );
        assert!(
            prom.contains("kiwi_crl_revoked_certificates{crl=\"/pub/crl.pem\"} 0\n"),
            "{prom}"
        );
        let r = check(&crl, &root, 30, now + time::Duration::days(160));
        assert_eq!(r.verdict, Verdict::Due, "{}", r.message);
        let r = check(&crl, &root, 30, now + time::Duration::days(181));
        assert_eq!(r.verdict, Verdict::Expired, "{}", r.message);
        assert!(
            r.seconds_left.is_some_and(|s| s < 0),
            "{:?}",
            r.seconds_left
        );
        let prom = crate::metrics::render(&r.gauges("c", now));
        assert!(prom.contains("kiwi_crl_valid{crl=\"c\"} 0\n"), "{prom}");
        assert!(r.message.contains("kiwi-signer crl"));

        // Another root's CRL, and a damaged one.
        let other = tempfile::tempdir().expect("tempdir");
        let (_, other_root) = ca_with_crl(other.path(), now);
        let r = check(&crl, &other_root, 30, now);
        assert_eq!(r.verdict, Verdict::Invalid, "{}", r.message);
        let mut der = der_of(&crl);
        let last = der.len() - 3;
        der[last] ^= 0x01;
        let r = check(&der, &root, 30, now);
        assert_eq!(r.verdict, Verdict::Invalid, "{}", r.message);
        assert_eq!(check(b"nonsense", &root, 30, now).verdict, Verdict::Invalid);
    }
}
