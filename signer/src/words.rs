//! Fingerprints a person can read aloud: hex and the PGP word list.
//!
//! At the ceremony table the operator reads a fingerprint and the witness writes it down or
//! compares it. The PGP word list (Juola and Zimmermann) alternates two 256-word lists, so a
//! swapped, dropped or repeated byte is audible. The list is kept as data in
//! `words/pgp-words.txt` (one line per byte value: hex, even word, odd word).

use sha2::{Digest, Sha256};

const WORD_TABLE: &str = include_str!("words/pgp-words.txt");

/// The even-position and odd-position word for byte `b`.
fn words_for(b: u8) -> (&'static str, &'static str) {
    // The table has exactly 256 well-formed lines; `tests::table_is_complete` checks it.
    let line = WORD_TABLE.lines().nth(usize::from(b)).unwrap_or("?? ? ?");
    let mut parts = line.split(' ');
    let _hex = parts.next();
    let even = parts.next().unwrap_or("?");
    let odd = parts.next().unwrap_or("?");
    (even, odd)
}

/// Encodes bytes as PGP words, alternating the even and odd lists, lowercased.
pub fn pgp_words(bytes: &[u8]) -> String {
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (even, odd) = words_for(*b);
            if i % 2 == 0 { even } else { odd }.to_ascii_lowercase()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lowercase hex, grouped in blocks of four characters for reading aloud.
pub fn grouped_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A SHA-256 fingerprint shown to the operator and witness.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Fingerprint(Sha256::digest(data).into())
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s.trim()).ok()?;
        Some(Fingerprint(v.try_into().ok()?))
    }

    /// Plain lowercase hex, as stored in the ledger.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The fingerprint as PGP words.
    pub fn words(&self) -> String {
        pgp_words(&self.0)
    }

    /// Two lines for a person: grouped hex, then the words.
    pub fn for_reading(&self) -> String {
        format!("{}\n    {}", grouped_hex(&self.0), self.words())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.hex())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete() {
        let lines: Vec<&str> = WORD_TABLE.lines().collect();
        assert_eq!(lines.len(), 256);
        for (i, line) in lines.iter().enumerate() {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "line {i}");
            assert_eq!(parts[0], format!("{i:02X}"));
        }
    }

    #[test]
    fn known_words() {
        assert_eq!(pgp_words(&[0x00, 0x00]), "aardvark adroitness");
        assert_eq!(pgp_words(&[0xFF, 0xFF]), "zulu yucatan");
        // The classic example from the PGPfone documentation.
        assert_eq!(
            pgp_words(&[0xE5, 0x82, 0x94, 0xF2, 0xE9, 0xA2, 0x27, 0x48]),
            "topmost istanbul pluto vagabond treadmill pacific brackish dictator"
        );
    }

    #[test]
    fn fingerprint_round_trips_hex() {
        let f = Fingerprint::of(b"kiwi");
        assert_eq!(Fingerprint::from_hex(&f.hex()), Some(f));
        assert_eq!(grouped_hex(&[0xab, 0xcd, 0xef]), "abcd ef");
    }
}
