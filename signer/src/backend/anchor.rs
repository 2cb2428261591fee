//! How an [`Anchor`] is stored on a device: a short, versioned text, the same bytes in a
//! YubiKey PIV data object and in a PKCS#11 `CKO_DATA` object, so an operator can read it with
//! the vendor's tools (`yubico-piv-tool -a read-object`, `pkcs11-tool --read-object`).
//!
//! ```text
//! kiwi-pki anchor 1
//! head 5f2c...e1 (64 hex digits)
//! crl 7
//! ```

use super::Anchor;
use crate::words::Fingerprint;

const MAGIC: &str = "kiwi-pki anchor 1";

impl Anchor {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{MAGIC}\nhead {}\ncrl {}\n",
            self.head.hex(),
            self.crl_number
        )
        .into_bytes()
    }

    /// Parses the stored form; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Anchor, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("it does not start with `{MAGIC}`"));
        }
        let head = lines
            .next()
            .and_then(|l| l.strip_prefix("head "))
            .and_then(Fingerprint::from_hex)
            .ok_or("no `head` line with 64 hex digits")?;
        let crl_number = lines
            .next()
            .and_then(|l| l.strip_prefix("crl "))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or("no `crl` line with a number")?;
        if lines.next().is_some() {
            return Err("extra lines after `crl`".into());
        }
        Ok(Anchor { head, crl_number })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_named() {
        let a = Anchor {
            head: Fingerprint::of(b"ledger"),
            crl_number: 42,
        };
        let bytes = a.encode();
        assert_eq!(Anchor::decode(&bytes), Ok(a.clone()));
        let text = String::from_utf8(bytes).expect("text");
        assert!(text.starts_with("kiwi-pki anchor 1\nhead "), "{text}");
        for (bad, why) in [
            (text.replace("anchor 1", "anchor 2"), "does not start"),
            (text.replace("crl 42", "crl x"), "`crl`"),
            (text.replace("head ", "head 00"), "`head`"),
            (format!("{text}more\n"), "extra"),
            (String::new(), "does not start"),
        ] {
            let e = Anchor::decode(bad.as_bytes()).expect_err("damaged");
            assert!(e.contains(why), "{e}");
        }
        assert!(Anchor::decode(&[0xff, 0xfe]).is_err());
    }
}
