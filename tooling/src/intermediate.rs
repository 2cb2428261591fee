//! A customer's intermediate CA on the online side: its key and CSR (`kiwictl intermediate
//! request`), and the checks a signed certificate must pass before `kiwictl intermediate
//! install` puts it into the state repo.
//!
//! The key is generated in memory, in the algorithm the tier's policy lists first, and leaves
//! this process only SOPS-encrypted (the caller does that) or as the password-encrypted PKCS#8
//! PEM that step-ca reads. The certificate checks reuse the PKI core's RFC 5280 linter with the
//! tier policy's expectations, so the online side accepts exactly what the signer issues; a
//! certificate whose tier marker names another tier than the repo's is refused (one issued
//! before tier markers carries none and is accepted).
//!
//! One exception to "exactly the tier policy's name constraints": after a churn hand-over the
//! repo pins the customer's own root, and `kiwi-signer reroot --permit-dns` may have added
//! permitted DNS subtrees of the customer's own (renewals under that root keep them byte for
//! byte). [`check_handed_over`] accepts those extra DNS names, and nothing else beyond the
//! policy. It is for a root that is not the MSP root the repo was onboarded with only: the MSP
//! root never grants a customer names outside the tier policy, so an MSP-issued certificate
//! with more is refused (as [`check_certificate`] does).

use std::path::Path;

use pkcs8::der::pem::LineEnding;
use rand_core::RngCore as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use kiwi_signer::algo::PublicKey;
use kiwi_signer::certpolicy::{self, PolicyOid};
use kiwi_signer::constraints::{NameConstraints, Subtree};
use kiwi_signer::eckey::EcKey;
use kiwi_signer::lint::{self, CaExpectations};
use kiwi_signer::policy::{self, IntermediatePolicy};
use kiwi_signer::slug::{Slug, Tier};
use kiwi_signer::words::Fingerprint;
use kiwi_signer::x509;

use crate::crl;

/// PBKDF2-SHA256 iterations for the step-ca key PEM (PBES2 with AES-256-CBC, which step-ca's
/// pemutil and openssl both read).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Why an intermediate operation refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntermediateError {
    /// The tier's policy could not be read.
    #[error("{0}; pass --policies with the repository's policies/ folder")]
    Policy(#[from] policy::PolicyError),
    /// The certificate fails a check.
    #[error("the certificate {path} was refused: {reason}; nothing was written")]
    Refused {
        /// The certificate file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Building the CSR or the encrypted key failed.
    #[error("could not build the {what}: {detail}")]
    Build {
        /// CSR or key PEM.
        what: &'static str,
        /// The library's message.
        detail: String,
    },
}

/// Loads the tier's intermediate policy from `policies_dir`.
pub fn tier_policy(
    policies_dir: &Path,
    tier: Tier,
) -> Result<IntermediatePolicy, IntermediateError> {
    Ok(policy::load_intermediate(policies_dir, tier)?)
}

/// Generates the intermediate key in the first algorithm the tier's policy allows.
pub fn generate_key(pol: &IntermediatePolicy) -> EcKey {
    // Policies are validated to allow at least one algorithm.
    let alg = pol.allowed_keys[0];
    EcKey::generate(alg)
}

/// A PEM CSR for `key`. Its subject is informative only: the signer takes the public key and
/// nothing else from a CSR.
pub fn make_csr(key: &EcKey, slug: &Slug) -> Result<String, IntermediateError> {
    let mut params =
        rcgen::CertificateParams::new(vec![]).map_err(|e| IntermediateError::Build {
            what: "CSR",
            detail: e.to_string(),
        })?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{slug} intermediate CA request"),
    );
    let csr = params
        .serialize_request(key)
        .and_then(|c| c.pem())
        .map_err(|e| IntermediateError::Build {
            what: "CSR",
            detail: e.to_string(),
        })?;
    Ok(csr)
}

/// The key as unencrypted PKCS#8 PEM (for a SOPS value only; zeroized on drop).
pub fn key_pem(key: &EcKey) -> Zeroizing<String> {
    let der = key.to_pkcs8_der();
    Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec())))
}

/// Reads a PKCS#8 PEM key (as stored in the state repo's SOPS file).
pub fn key_from_pem(text: &str, origin: &str) -> Result<EcKey, String> {
    let p = pem::parse(text).map_err(|e| format!("{origin}: not a PEM key ({e})"))?;
    let der = Zeroizing::new(p.into_contents());
    EcKey::from_pkcs8_der(&der).map_err(|e| format!("{origin}: {e}"))
}

/// The key as step-ca reads it: PKCS#8 encrypted (PBES2, PBKDF2-SHA256, AES-256-CBC) under a
/// fresh random password. Returns the PEM and the password, both zeroized on drop.
pub fn step_ca_key(
    key: &EcKey,
) -> Result<(Zeroizing<String>, Zeroizing<String>), IntermediateError> {
    let build = |detail: String| IntermediateError::Build {
        what: "encrypted key PEM",
        detail,
    };
    let mut raw = Zeroizing::new([0u8; 24]);
    rand_core::OsRng.fill_bytes(raw.as_mut());
    let password = Zeroizing::new(hex::encode(raw.as_ref()));
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut salt);
    rand_core::OsRng.fill_bytes(&mut iv);
    let params =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
            .map_err(|e| build(e.to_string()))?;
    let der = key.to_pkcs8_der();
    let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| build(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, password.as_bytes())
        .map_err(|e| build(e.to_string()))?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| build(e.to_string()))?;
    Ok((Zeroizing::new(pem.to_string()), password))
}

/// A certificate that passed every install check.
#[derive(Debug, Clone)]
pub struct CheckedCert {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The root certificate, DER.
    pub root_der: Vec<u8>,
    /// Serial, lowercase hex.
    pub serial: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// SHA-256 of the certificate's DER.
    pub sha256: Fingerprint,
    /// SHA-256 of the root's DER.
    pub root_sha256: Fingerprint,
}

/// The DER inside a PEM, or the bytes themselves when they are not PEM.
pub fn der_of(bytes: &[u8]) -> Vec<u8> {
    match pem::parse(bytes) {
        Ok(p) => p.into_contents(),
        Err(_) => bytes.to_vec(),
    }
}

/// The public key a certificate (PEM or DER) certifies, if it parses.
pub fn public_key_of(cert: &[u8]) -> Option<PublicKey> {
    let der = der_of(cert);
    let parsed = x509::parse_cert(&der).ok()?;
    x509::cert_key(&parsed).ok()
}

/// What `check_certificate` needs to know.
pub struct Expected<'a> {
    /// The customer.
    pub slug: &'a Slug,
    /// Their tier's policy.
    pub policy: &'a IntermediatePolicy,
    /// The public key of the intermediate key held in the repo's secrets.
    pub key: &'a PublicKey,
    /// The MSP root the state repo pins (SHA-256 of its DER): any other root is refused.
    pub root_sha256: &'a Fingerprint,
}

/// Checks a signed intermediate certificate before install: `root` is the root the state repo
/// pins (a rogue root that signed a matching certificate is refused), it chains to `root` (issuer name,
/// AKI, signature, inside the root's validity), carries the tier policy's CA flags and the
/// slug's name constraint (the PKI core's linter), holds the repo's key, is currently valid, and
/// is not revoked by `crl` (which must itself be this root's, valid, and unexpired).
pub fn check_certificate(
    origin: &str,
    cert: &[u8],
    root: &[u8],
    crl_bytes: Option<&[u8]>,
    want: &Expected<'_>,
    now: OffsetDateTime,
) -> Result<CheckedCert, IntermediateError> {
    check(origin, cert, root, crl_bytes, want, false, now)
}

/// [`check_certificate`] for a repo handed over to the customer (pinned to their own root, not
/// the MSP root it was onboarded with): the name constraints may permit DNS names beyond the
/// tier policy's (`reroot --permit-dns`); everything else is checked as for the MSP root.
pub fn check_handed_over(
    origin: &str,
    cert: &[u8],
    root: &[u8],
    crl_bytes: Option<&[u8]>,
    want: &Expected<'_>,
    now: OffsetDateTime,
) -> Result<CheckedCert, IntermediateError> {
    check(origin, cert, root, crl_bytes, want, true, now)
}

fn check(
    origin: &str,
    cert: &[u8],
    root: &[u8],
    crl_bytes: Option<&[u8]>,
    want: &Expected<'_>,
    customer_root: bool,
    now: OffsetDateTime,
) -> Result<CheckedCert, IntermediateError> {
    let refused = |reason: String| IntermediateError::Refused {
        path: origin.to_string(),
        reason,
    };
    let der = der_of(cert);
    let root_der = der_of(root);
    let root_sha256 = Fingerprint::of(&root_der);
    if root_sha256 != *want.root_sha256 {
        return Err(refused(format!(
            "the root given has SHA-256 {}, but this state repo is pinned to the MSP root {} \
             (.kiwi/repo.yaml); pass KiwiStack's root certificate",
            root_sha256.hex(),
            want.root_sha256.hex()
        )));
    }
    let root_cert =
        x509::parse_cert(&root_der).map_err(|e| refused(format!("the root is unreadable: {e}")))?;
    let root_key =
        x509::cert_key(&root_cert).map_err(|e| refused(format!("the root's key: {e}")))?;
    let parsed = x509::parse_cert(&der).map_err(|e| refused(format!("not a certificate: {e}")))?;
    let tbs = &parsed.tbs_certificate;
    if tbs.issuer.as_raw() != root_cert.tbs_certificate.subject.as_raw() {
        return Err(refused(format!(
            "it was issued by `{}`, not by the root `{}`",
            tbs.issuer, root_cert.tbs_certificate.subject
        )));
    }
    x509::verify_cert(&parsed, &root_key)
        .map_err(|e| refused(format!("its signature does not verify with the root's key ({e}): it is from another root or damaged")))?;
    // The root signed the tier marker; one issued before markers has none and is not checked.
    let marked = certpolicy::marked_tier(&parsed).map_err(|e| refused(format!("its tier: {e}")))?;
    if let Some(t) = marked.filter(|t| *t != want.policy.tier) {
        return Err(refused(format!(
            "it is a {t}-tier certificate (policy OID {}), but this state repo is {} tier \
             (.kiwi/repo.yaml); it was signed with the wrong --tier: ask for a {}-tier certificate",
            PolicyOid::tier(t),
            want.policy.tier,
            want.policy.tier
        )));
    }
    let cert_key = x509::cert_key(&parsed).map_err(|e| refused(format!("its key: {e}")))?;
    if cert_key != *want.key {
        return Err(refused(
            "it certifies a different key from the one in this state repo's secrets; it belongs to another request".into(),
        ));
    }
    let mut constraints = want.policy.name_constraints.render(want.slug);
    if customer_root {
        // Without the extension (or unparsable) nothing is extra: the linter names the fault.
        let have = NameConstraints::of_cert(&parsed).map(|(nc, _)| nc.permitted);
        let extra = extra_dns(have.unwrap_or_default(), &constraints).map_err(refused)?;
        constraints.permitted.extend(extra);
    }
    let root_key_id = root_key.key_id();
    let expect = CaExpectations {
        issuer_name: root_cert.tbs_certificate.subject.as_raw(),
        issuer_key_id: &root_key_id,
        issuer_window: (
            root_cert.tbs_certificate.validity.not_before.timestamp(),
            root_cert.tbs_certificate.validity.not_after.timestamp(),
        ),
        subject_key: want.key,
        path_len: Some(want.policy.path_len),
        key_usages: &want.policy.key_usages,
        name_constraints: Some(&constraints),
        certificate_policy: marked.map(|_| &want.policy.certificate_policy),
    };
    let findings = lint::lint_ca_cert(&parsed, &expect);
    if !findings.is_empty() {
        let extra = findings
            .iter()
            .any(|f| f.starts_with("nameConstraints permits DNS:"));
        return Err(refused(format!(
            "it does not match the {} policy for `{}`: {}{}",
            want.policy.tier,
            want.slug,
            findings.join("; "),
            if extra && !customer_root {
                " (DNS names beyond the policy's are accepted only under the customer's own \
                 root after a hand-over, from `kiwi-signer reroot --permit-dns`, never from the \
                 MSP root)"
            } else {
                ""
            }
        )));
    }
    let nb = tbs.validity.not_before.to_datetime();
    let na = tbs.validity.not_after.to_datetime();
    if now < nb - time::Duration::minutes(5) || now > na {
        return Err(refused(format!("it is not valid now (valid {nb} to {na})")));
    }
    let serial = x509::Serial::from_der_integer(tbs.raw_serial());
    if let Some(crl_bytes) = crl_bytes {
        let report = crl::check(crl_bytes, &root_der, 0, now);
        if matches!(
            report.verdict,
            crl::Verdict::Invalid | crl::Verdict::Expired
        ) {
            return Err(refused(format!(
                "the CRL given cannot be trusted: {}",
                report.message
            )));
        }
        let crl_der = der_of(crl_bytes);
        let parsed_crl = x509::parse_crl(&crl_der).map_err(|e| refused(format!("CRL: {e}")))?;
        if parsed_crl
            .iter_revoked_certificates()
            .any(|r| x509::Serial::from_der_integer(r.raw_serial()) == serial)
        {
            return Err(refused(format!(
                "serial {serial} is revoked by the CRL; ask for a new certificate at the next ceremony"
            )));
        }
    }
    Ok(CheckedCert {
        sha256: Fingerprint::of(&der),
        root_sha256,
        serial: serial.hex(),
        not_after: na
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        der,
        root_der,
    })
}

/// The DNS names of `permitted` (a certificate's) beyond `policy`'s, each a well-formed name.
fn extra_dns(permitted: Vec<Subtree>, policy: &NameConstraints) -> Result<Vec<Subtree>, String> {
    let mut extra = Vec::new();
    for s in permitted {
        if let Subtree::Dns(name) = &s {
            if !policy.permitted.contains(&s) {
                policy::check_dns_name(name).map_err(|m| {
                    format!("its nameConstraints permit the DNS name `{name}`: {m}")
                })?;
                extra.push(s);
            }
        }
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiwi_signer::callbacks::Scripted;

    fn policies() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    #[test]
    fn request_sign_and_check_round_trip_and_refusals() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let cb = Scripted {
            confirm: true,
            secret: "unit test passphrase".into(),
        };
        let ca_dir = tmp.path().join("ca");
        let c = kiwi_signer::ceremony::Ceremony::new(&cb, now);
        kiwi_signer::ceremony::init(
            &ca_dir,
            &policies().join("root.yaml"),
            &kiwi_signer::ceremony::init::BackendSpec::soft(),
            &c,
        )
        .expect("init");
        let slug = Slug::parse("acme").expect("slug");
        let pol = tier_policy(&policies(), Tier::Core).expect("policy");
        let key = generate_key(&pol);
        assert_eq!(key.algorithm(), pol.allowed_keys[0]);
        let csr = make_csr(&key, &slug).expect("csr");
        // The key survives a PEM round trip (how it is stored in SOPS).
        let back = key_from_pem(&key_pem(&key), "test").expect("pem");
        assert_eq!(back.public_key(), key.public_key());

        let out = tmp.path().join("acme.crt");
        let req = kiwi_signer::ceremony::sign::SignRequest {
            csr: csr.into_bytes(),
            csr_origin: "acme.csr".into(),
            slug: slug.clone(),
            tier: Tier::Core,
            days: None,
            out: out.clone(),
            shared: false,
        };
        kiwi_signer::ceremony::run(&ca_dir, &req, &c).expect("sign");
        let cert = std::fs::read(&out).expect("cert");
        let root = std::fs::read(ca_dir.join("root.pem")).expect("root");
        let pinned = Fingerprint::of(&der_of(&root));
        let want = Expected {
            slug: &slug,
            policy: &pol,
            key: key.public_key(),
            root_sha256: &pinned,
        };
        let ok = check_certificate("acme.crt", &cert, &root, None, &want, now).expect("valid");
        assert_eq!(ok.sha256, Fingerprint::of(&der_of(&cert)));

        // Another slug, another key, another root: each refused with its reason.
        let globex = Slug::parse("globex").expect("slug");
        let other_slug = Expected {
            slug: &globex,
            ..want
        };
        let e = check_certificate("c", &cert, &root, None, &other_slug, now).expect_err("slug");
        assert!(e.to_string().contains("globex.od.kiwistack.io"), "{e}");
        // Another tier: the certificate's marker says core, the repo says mesh.
        let mesh = tier_policy(&policies(), Tier::Mesh).expect("policy");
        let other_tier = Expected {
            policy: &mesh,
            ..want
        };
        let e = check_certificate("c", &cert, &root, None, &other_tier, now).expect_err("tier");
        assert!(
            e.to_string()
                .contains("it is a core-tier certificate (policy OID 1.2.840.113556.")
                && e.to_string().contains("this state repo is mesh tier"),
            "{e}"
        );
        let other_key = generate_key(&pol);
        let wrong_key = Expected {
            key: other_key.public_key(),
            ..want
        };
        let e = check_certificate("c", &cert, &root, None, &wrong_key, now).expect_err("key");
        assert!(e.to_string().contains("different key"), "{e}");
        let other_ca = tmp.path().join("other");
        kiwi_signer::ceremony::init(
            &other_ca,
            &policies().join("root.yaml"),
            &kiwi_signer::ceremony::init::BackendSpec::soft(),
            &c,
        )
        .expect("init");
        let other_root = std::fs::read(other_ca.join("root.pem")).expect("root");
        let rogue = Fingerprint::of(&der_of(&other_root));
        // Another root given at install: refused by the pin, naming both fingerprints.
        let e = check_certificate("c", &cert, &other_root, None, &want, now).expect_err("root");
        let msg = e.to_string();
        assert!(
            msg.contains(&rogue.hex()) && msg.contains(&pinned.hex()),
            "{msg}"
        );
        // A repo pinned to another root: its signature check refuses our certificate too.
        let pinned_elsewhere = Expected {
            root_sha256: &rogue,
            ..want
        };
        let e = check_certificate("c", &cert, &other_root, None, &pinned_elsewhere, now)
            .expect_err("root");
        assert!(e.to_string().contains("another root"), "{e}");

        // Revoked: the CRL lists it.
        let serial = x509::Serial::parse_hex(&ok.serial).expect("serial");
        let crl_path = tmp.path().join("crl.pem");
        let revoke = kiwi_signer::ceremony::revoke::Revoke {
            serial,
            reason: kiwi_signer::ledger::Reason::Superseded,
            out: crl_path.clone(),
        };
        kiwi_signer::ceremony::run(&ca_dir, &revoke, &c).expect("revoke");
        let crl_bytes = std::fs::read(&crl_path).expect("crl");
        let e = check_certificate("c", &cert, &root, Some(&crl_bytes), &want, now)
            .expect_err("revoked");
        assert!(e.to_string().contains("revoked"), "{e}");
    }

    #[test]
    fn extra_permitted_dns_names_pass_only_as_handed_over() {
        use kiwi_signer::ceremony::{self, init, reroot::Reroot};
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path();
        let now = OffsetDateTime::now_utc();
        let cb = Scripted {
            confirm: true,
            secret: "unit test passphrase".into(),
        };
        let c = ceremony::Ceremony::new(&cb, now);
        let (msp, customer) = (t.join("msp"), t.join("customer"));
        let soft = init::BackendSpec::soft();
        ceremony::init(&msp, &policies().join("root.yaml"), &soft, &c).expect("init");
        let root = policies().join("customer-root.yaml");
        init::init_org(&customer, &root, Some("Acme GmbH"), &soft, &c).expect("init --org");
        let slug = Slug::parse("acme").expect("slug");
        let pol = tier_policy(&policies(), Tier::Mesh).expect("policy");
        let key = generate_key(&pol);
        let req = ceremony::sign::SignRequest {
            csr: make_csr(&key, &slug).expect("csr").into_bytes(),
            csr_origin: "acme.csr".into(),
            slug: slug.clone(),
            tier: Tier::Mesh,
            days: None,
            out: t.join("acme.crt"),
            shared: false,
        };
        ceremony::run(&msp, &req, &c).expect("sign");
        let crl = ceremony::crl::Crl {
            out: t.join("msp.crl"),
        };
        ceremony::run(&msp, &crl, &c).expect("crl");
        let reroot = |names: &[&str], out: &str| {
            let op = Reroot::read(
                &t.join("acme.crt"),
                &msp.join("root.pem"),
                &t.join("msp.crl"),
                names.iter().map(|n| n.to_string()).collect(),
                t.join(out),
            )
            .expect("read");
            ceremony::run(&customer, &op, &c).expect("reroot");
            std::fs::read(t.join(out)).expect("cert")
        };
        let plain = reroot(&[], "plain.pem");
        let extra = reroot(&["acme.example"], "extra.pem");
        let root = std::fs::read(customer.join("root.pem")).expect("root");
        let pinned = Fingerprint::of(&der_of(&root));
        let want = Expected {
            slug: &slug,
            policy: &pol,
            key: key.public_key(),
            root_sha256: &pinned,
        };
        // Exactly the policy's constraints: both checks take it.
        for check in [check_certificate, check_handed_over] {
            check("plain.pem", &plain, &root, None, &want, now).expect("plain");
        }
        // One more DNS name: only as handed over; the other check says why not.
        check_handed_over("extra.pem", &extra, &root, None, &want, now).expect("handed over");
        let e = check_certificate("extra.pem", &extra, &root, None, &want, now)
            .expect_err("extra names from a root that is not the customer's")
            .to_string();
        assert!(
            e.contains("permits DNS:acme.example, which the policy does not list")
                && e.contains("never from the MSP root"),
            "{e}"
        );
        // Handed over or not, the rest of the policy still binds: another customer's slug.
        let globex = Slug::parse("globex").expect("slug");
        let other = Expected {
            slug: &globex,
            ..want
        };
        let e = check_handed_over("extra.pem", &extra, &root, None, &other, now)
            .expect_err("another slug")
            .to_string();
        assert!(e.contains("globex.od.kiwistack.io"), "{e}");
        // A name that is no DNS name is refused, naming it.
        let dns = |n: &str| Subtree::Dns(n.into());
        let policy_nc = pol.name_constraints.render(&slug);
        let e = extra_dns(vec![dns("")], &policy_nc).expect_err("empty name");
        assert!(e.contains("the DNS name ``"), "{e}");
        assert_eq!(
            extra_dns(vec![dns("acme.example")], &policy_nc),
            Ok(vec![dns("acme.example")])
        );
    }

    #[test]
    fn the_step_ca_key_is_encrypted_pkcs8_pbes2() {
        let pol = tier_policy(&policies(), Tier::Mesh).expect("policy");
        let key = generate_key(&pol);
        let (pem_text, password) = step_ca_key(&key).expect("encrypt");
        assert!(pem_text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let doc = pem::parse(pem_text.as_bytes()).expect("pem");
        let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.contents()).expect("pkcs8");
        let plain = enc
            .decrypt(password.as_bytes())
            .expect("decrypts with the password");
        assert_eq!(plain.as_bytes(), key.to_pkcs8_der().as_slice());
        assert!(enc.decrypt(b"wrong").is_err());
    }
}
