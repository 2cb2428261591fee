//! Customer identity as the signer sees it: the slug and the tier.
//!
//! The slug names the customer everywhere (namespaces, certificate subjects, the permitted DNS
//! subtree), so it is parsed once into [`Slug`] and nothing else can reach a certificate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A customer slug: an RFC 1123 label (lowercase letters, digits and hyphens, 1 to
/// [`MAX_LEN`] characters, no leading or trailing hyphen), and not an IDNA or other reserved
/// label (`--` in positions 3 and 4, as in `xn--`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

/// Why a string is not a slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlugError {
    /// Empty string.
    #[error("the slug is empty; use a lowercase DNS label such as `acme`")]
    Empty,
    /// More than 63 characters.
    #[error("the slug `{0}` has {1} characters; a DNS label has at most 63")]
    TooLong(String, usize),
    /// A character outside `a-z`, `0-9`, `-`.
    #[error(
        "the slug `{0}` contains `{1}`; only lowercase letters a-z, digits and `-` are allowed"
    )]
    BadChar(String, char),
    /// Starts or ends with a hyphen.
    #[error("the slug `{0}` starts or ends with `-`; a DNS label may not")]
    EdgeHyphen(String),
    /// An IDNA A-label (`xn--...`): it would display as another name.
    #[error("the slug `{0}` is an IDNA (punycode) label; use plain ASCII letters and digits, without `xn--`")]
    Idna(String),
    /// `--` in positions 3 and 4, which RFC 5891 reserves for future label encodings.
    #[error("the slug `{0}` has `--` in positions 3 and 4, which DNS reserves for encoded labels; choose a slug without it")]
    ReservedHyphens(String),
}

/// The longest slug: a DNS label has at most 63 characters. Policies are checked against a
/// slug this long when they are loaded.
pub const MAX_LEN: usize = 63;

/// Whether a DNS label is reserved: `--` in positions 3 and 4 (RFC 5891 section 4.2.3.1),
/// which covers IDNA A-labels (`xn--`).
pub fn is_reserved_label(label: &str) -> bool {
    label.get(2..4) == Some("--")
}

impl Slug {
    /// Parses an RFC 1123 label.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        if s.is_empty() {
            return Err(SlugError::Empty);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(SlugError::BadChar(s.to_string(), c));
        }
        if s.len() > MAX_LEN {
            return Err(SlugError::TooLong(s.to_string(), s.len()));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(SlugError::EdgeHyphen(s.to_string()));
        }
        if s.starts_with("xn--") {
            return Err(SlugError::Idna(s.to_string()));
        }
        if is_reserved_label(s) {
            return Err(SlugError::ReservedHyphens(s.to_string()));
        }
        Ok(Slug(s.to_string()))
    }

    /// The longest slug there can be ([`MAX_LEN`] characters), for checking policies.
    pub fn longest() -> Slug {
        Slug("a".repeat(MAX_LEN))
    }

    /// The slug as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Slug {
    type Err = SlugError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Slug::parse(s)
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Slug::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The customer's tier; each has its own intermediate policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Shared Core cluster.
    Core,
    /// Dedicated k3s with the Mesh services.
    Mesh,
    /// Dedicated k3s with the Fleet services.
    Fleet,
}

impl Tier {
    /// All tiers, in order.
    pub const ALL: [Tier; 3] = [Tier::Core, Tier::Mesh, Tier::Fleet];

    /// The tier's name as written in policies and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Core => "core",
            Tier::Mesh => "mesh",
            Tier::Fleet => "fleet",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown tier name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier `{0}`; the tiers are core, mesh and fleet")]
pub struct TierError(pub String);

impl FromStr for Tier {
    type Err = TierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| TierError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels() {
        for ok in [
            "a",
            "acme",
            "beta-corp",
            "x1",
            "0abc",
            "a-b--c",
            "abc--d",
            &"a".repeat(63),
        ] {
            assert_eq!(Slug::parse(ok).map(|s| s.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn refuses_non_labels() {
        assert_eq!(Slug::parse(""), Err(SlugError::Empty));
        assert!(matches!(
            Slug::parse("Acme"),
            Err(SlugError::BadChar(_, 'A'))
        ));
        assert!(matches!(
            Slug::parse("a.b"),
            Err(SlugError::BadChar(_, '.'))
        ));
        assert!(matches!(
            Slug::parse("a_b"),
            Err(SlugError::BadChar(_, '_'))
        ));
        assert!(matches!(Slug::parse("-a"), Err(SlugError::EdgeHyphen(_))));
        assert!(matches!(Slug::parse("a-"), Err(SlugError::EdgeHyphen(_))));
        assert!(matches!(
            Slug::parse(&"a".repeat(64)),
            Err(SlugError::TooLong(_, 64))
        ));
        assert!(matches!(
            Slug::parse("ac me"),
            Err(SlugError::BadChar(_, ' '))
        ));
    }

    #[test]
    fn refuses_idna_and_reserved_labels() {
        // `xn--80ak6aa92e` is punycode for a Cyrillic name that looks like `apple`.
        let e = Slug::parse("xn--80ak6aa92e").expect_err("IDNA");
        assert!(matches!(e, SlugError::Idna(_)));
        assert!(e.to_string().contains("IDNA"), "{e}");
        for s in ["ab--cd", "zz--", "a1--x"] {
            assert!(
                matches!(
                    Slug::parse(s),
                    Err(SlugError::ReservedHyphens(_) | SlugError::EdgeHyphen(_))
                ),
                "{s}"
            );
        }
        assert!(matches!(
            Slug::parse("ab--cd"),
            Err(SlugError::ReservedHyphens(_))
        ));
        assert_eq!(Slug::longest().as_str().len(), MAX_LEN);
        assert_eq!(Slug::parse(Slug::longest().as_str()), Ok(Slug::longest()));
    }

    #[test]
    fn tiers_parse() {
        assert_eq!("mesh".parse::<Tier>(), Ok(Tier::Mesh));
        assert!("gold".parse::<Tier>().is_err());
        assert!("Core".parse::<Tier>().is_err());
    }
}
