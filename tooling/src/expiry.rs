//! `kiwictl intermediate check`: which state repos' intermediates are close to expiry?
//!
//! An intermediate lives for years and nothing pages anyone before it expires; when it does,
//! the customer's step-ca stops issuing. A scheduled job runs this check over every state repo
//! (optionally writing Prometheus metrics, see [`crate::metrics`]) so that a renewal
//! (`intermediate renew`, a ceremony, `install --replace`) is planned in time.
//!
//! It reads only the public `values/smallstep.yaml` (the certificate step-ca serves), so it
//! needs no age key.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use kiwi_signer::x509;

use crate::crl::Verdict;
use crate::metrics::Gauge;
use crate::onboard::STEP_VALUES;
use crate::staterepo;

/// One repo's intermediate.
#[derive(Debug, Clone, Serialize)]
pub struct Expiry {
    /// The state repo.
    pub repo: PathBuf,
    /// Its customer, when the marker is readable.
    pub slug: Option<String>,
    /// `ok`, `due` (within the warning margin: renew), `expired`, or `invalid` (no readable
    /// intermediate installed).
    pub verdict: Verdict,
    /// What it means and what to do.
    pub message: String,
    /// Serial, lowercase hex.
    pub serial: Option<String>,
    /// notAfter, RFC 3339.
    pub not_after: Option<String>,
    /// Whole days until notAfter (negative once expired).
    pub days_left: Option<i64>,
    /// Seconds until notAfter (negative once expired).
    pub seconds_left: Option<i64>,
}

/// The intermediate certificate (DER) step-ca serves: `inject.certificates.intermediate_ca` in
/// the repo's `values/smallstep.yaml`.
pub fn served(repo: &Path) -> Result<Vec<u8>, String> {
    let path = repo.join(STEP_VALUES);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e}; no intermediate is installed (run `kiwictl intermediate install`)",
            path.display()
        )
    })?;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let pem_text = doc["inject"]["certificates"]["intermediate_ca"]
        .as_str()
        .ok_or_else(|| {
            format!(
                "{}: inject.certificates.intermediate_ca: missing",
                path.display()
            )
        })?;
    Ok(crate::intermediate::der_of(pem_text.as_bytes()))
}

/// The served intermediate's serial (hex), notAfter (RFC 3339) and notAfter.
fn installed(repo: &Path) -> Result<(String, String, OffsetDateTime), String> {
    let der = served(repo)?;
    let path = repo.join(STEP_VALUES);
    let cert = x509::parse_cert(&der).map_err(|e| {
        format!(
            "{}: inject.certificates.intermediate_ca: {e}",
            path.display()
        )
    })?;
    let tbs = &cert.tbs_certificate;
    let serial = x509::Serial::from_der_integer(tbs.raw_serial()).hex();
    let na = tbs.validity.not_after.to_datetime();
    let rfc = na
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok((serial, rfc, na))
}

/// Checks the intermediate installed in `repo` against `warn_days`.
pub fn check(repo: &Path, warn_days: u32, now: OffsetDateTime) -> Expiry {
    let slug = staterepo::open(repo).ok().map(|i| i.slug.to_string());
    let mut e = Expiry {
        repo: repo.to_path_buf(),
        slug,
        verdict: Verdict::Invalid,
        message: String::new(),
        serial: None,
        not_after: None,
        days_left: None,
        seconds_left: None,
    };
    match installed(repo) {
        Err(m) => e.message = m,
        Ok((serial, rfc, na)) => {
            let left = na - now;
            let days = left.whole_days();
            e.verdict = if left.is_negative() {
                Verdict::Expired
            } else if days < i64::from(warn_days) {
                Verdict::Due
            } else {
                Verdict::Ok
            };
            e.message = match e.verdict {
                Verdict::Expired => format!(
                    "intermediate {serial} expired on {rfc}: step-ca no longer issues; renew now (`kiwictl intermediate renew`, sign, `install --replace`)"
                ),
                Verdict::Due => format!(
                    "intermediate {serial} expires in {days} days ({rfc}), within the {warn_days}-day margin: renew it (`kiwictl intermediate renew`, sign at the next ceremony, `install --replace`)"
                ),
                _ => format!("intermediate {serial} valid for {days} more days ({rfc})"),
            };
            e.serial = Some(serial);
            e.not_after = Some(rfc);
            e.days_left = Some(days);
            e.seconds_left = Some(left.whole_seconds());
        }
    }
    e
}

/// The checks as Prometheus gauges, labelled with the repo's path and slug: whether an
/// intermediate is installed and unexpired (an unreadable one yields `kiwi_intermediate_valid
/// 0`, so alerts fire), seconds until notAfter, and when the check ran.
pub fn gauges(checks: &[Expiry], now: OffsetDateTime) -> Vec<Gauge> {
    let labels = |e: &Expiry| {
        vec![
            ("repo", e.repo.display().to_string()),
            ("slug", e.slug.clone().unwrap_or_default()),
        ]
    };
    let mut valid = Gauge {
        name: "kiwi_intermediate_valid",
        help: "1 when the state repo's installed intermediate is readable and not expired.",
        samples: vec![],
    };
    let mut left = Gauge {
        name: "kiwi_intermediate_not_after_seconds",
        help: "Seconds until the installed intermediate's notAfter (negative once it has passed).",
        samples: vec![],
    };
    for e in checks {
        let ok = matches!(e.verdict, Verdict::Ok | Verdict::Due);
        valid.samples.push((labels(e), if ok { 1.0 } else { 0.0 }));
        if let Some(s) = e.seconds_left {
            let mut l = labels(e);
            l.push(("serial", e.serial.clone().unwrap_or_default()));
            left.samples.push((l, s as f64));
        }
    }
    vec![
        valid,
        left,
        Gauge::one(
            "kiwi_intermediate_check_timestamp_seconds",
            "When kiwictl intermediate check last ran (Unix time).",
            vec![],
            now.unix_timestamp() as f64,
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    /// A directory whose `values/smallstep.yaml` serves a certificate valid until `not_after`.
    fn served_until(not_after: OffsetDateTime) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let pol =
            crate::intermediate::tier_policy(&policies, kiwi_signer::slug::Tier::Mesh).unwrap();
        let key = crate::intermediate::generate_key(&pol);
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.not_before = not_after - time::Duration::days(400);
        params.not_after = not_after;
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x2a]));
        let pem = params.self_signed(&key).unwrap().pem();
        std::fs::create_dir(d.path().join("values")).unwrap();
        let slug: kiwi_signer::slug::Slug = "acme".parse().unwrap();
        let fp = kiwi_signer::words::Fingerprint::of(pem.as_bytes());
        let values = crate::onboard::values_doc(&slug, &pem, &pem, &fp, "test", "").unwrap();
        std::fs::write(d.path().join(STEP_VALUES), values).unwrap();
        d
    }

    #[test]
    fn due_inside_the_margin_expired_after_it_invalid_without_one() {
        let now = OffsetDateTime::now_utc();
        let d = served_until(now + time::Duration::days(20));
        assert_eq!(check(d.path(), 30, now).verdict, Verdict::Due);
        let ok = check(d.path(), 10, now);
        assert_eq!(ok.verdict, Verdict::Ok, "{}", ok.message);
        assert_eq!(ok.days_left, Some(19));
        let later = check(d.path(), 10, now + time::Duration::days(21));
        assert_eq!(later.verdict, Verdict::Expired);
        assert!(later.seconds_left.unwrap() < 0);
        let none = tempfile::tempdir().unwrap();
        let missing = check(none.path(), 10, now);
        assert_eq!(missing.verdict, Verdict::Invalid);
        assert!(
            missing.message.contains("no intermediate is installed"),
            "{}",
            missing.message
        );
        let prom = crate::metrics::render(&gauges(&[ok, missing], now));
        assert!(
            prom.contains(&format!(
                "kiwi_intermediate_valid{{repo=\"{}\",slug=\"\"}} 0\n",
                none.path().display()
            )),
            "{prom}"
        );
        assert!(
            prom.contains("kiwi_intermediate_not_after_seconds{"),
            "{prom}"
        );
    }
}
