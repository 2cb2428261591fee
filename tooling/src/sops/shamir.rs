//! Shamir secret sharing over GF(2^8), share-compatible with the HashiCorp Vault code sops uses
//! for key groups: each share is the y bytes followed by one byte holding x (1-based).

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// GF(2^8) multiplication with the AES polynomial x^8 + x^4 + x^3 + x + 1.
fn mult(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        let hi = a & 0x80;
        a <<= 1;
        if hi != 0 {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    r
}

fn inverse(a: u8) -> u8 {
    // a^254 = a^-1 in GF(2^8).
    let mut r = 1u8;
    for _ in 0..254 {
        r = mult(r, a);
    }
    r
}

/// Splits `secret` into `parts` shares, any `threshold` of which recover it.
pub fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, String> {
    if parts < threshold || parts > 255 || !(2..=255).contains(&threshold) || secret.is_empty() {
        return Err(format!(
            "cannot split into {parts} parts with threshold {threshold}; need 2 <= threshold <= parts <= 255"
        ));
    }
    let mut out: Vec<Zeroizing<Vec<u8>>> = (0..parts)
        .map(|i| {
            let mut v = vec![0u8; secret.len() + 1];
            v[secret.len()] = (i + 1) as u8;
            Zeroizing::new(v)
        })
        .collect();
    let mut coeffs = Zeroizing::new(vec![0u8; threshold]);
    for (idx, &byte) in secret.iter().enumerate() {
        coeffs[0] = byte;
        OsRng.fill_bytes(&mut coeffs[1..]);
        for (i, share) in out.iter_mut().enumerate() {
            let x = (i + 1) as u8;
            // Horner evaluation from the highest coefficient.
            let mut y = 0u8;
            for &c in coeffs.iter().rev() {
                y = mult(y, x) ^ c;
            }
            share[idx] = y;
        }
    }
    Ok(out)
}

/// Recovers the secret from at least `threshold` distinct shares.
pub fn combine(parts: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, String> {
    if parts.len() < 2 {
        return Err("less than two parts cannot reconstruct the secret".into());
    }
    let len = parts[0].len();
    if len < 2 || parts.iter().any(|p| p.len() != len) {
        return Err("all parts must be the same length (at least 2 bytes)".into());
    }
    let xs: Vec<u8> = parts.iter().map(|p| p[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return Err("duplicate part detected".into());
        }
    }
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (idx, s) in secret.iter_mut().enumerate() {
        // Lagrange interpolation at x = 0.
        let mut acc = 0u8;
        for (i, p) in parts.iter().enumerate() {
            let mut basis = 1u8;
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    basis = mult(basis, mult(xj, inverse(xs[i] ^ xj)));
                }
            }
            acc ^= mult(p[idx], basis);
        }
        *s = acc;
    }
    Ok(secret)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn any_threshold_subset_recovers() {
        let secret = [7u8; 32];
        let shares = split(&secret, 3, 2).unwrap();
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let sub: Vec<_> = pair.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(&combine(&sub).unwrap()[..], &secret[..]);
        }
    }

    #[test]
    fn field_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mult(a, inverse(a)), 1);
        }
    }
}
