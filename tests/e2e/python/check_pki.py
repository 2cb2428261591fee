"""Checks kiwi-signer output with Python `cryptography` (a verifier we did not write).

Usage:
  check_pki.py chain ROOT INTERMEDIATE LEAF HOSTNAME   verify a server chain, incl. name constraints
  check_pki.py issued ROOT CERT                         CERT's signature verifies under ROOT's key
  check_pki.py crl ROOT CRL                             the CRL's signature verifies; prints revoked serials (hex)
  check_pki.py constraints CERT                         prints CERT's nameConstraints, one subtree a line
  check_pki.py policies CERT                            prints CERT's certificatePolicies, one policy a line

Prints `ok` (and details) and exits 0 on success; prints `error: ...` and exits 1 otherwise.
"""
import sys

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError


def load_cert(path):
    data = open(path, "rb").read()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_crl(path):
    data = open(path, "rb").read()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def main(argv):
    mode = argv[1]
    if mode == "chain":
        root, inter, leaf = (load_cert(p) for p in argv[2:5])
        verifier = PolicyBuilder().store(Store([root])).build_server_verifier(
            x509.DNSName(argv[5])
        )
        try:
            chain = verifier.verify(leaf, [inter])
        except VerificationError as e:
            print(f"error: {e}")
            return 1
        print(f"ok chain of {len(chain)}")
        return 0
    if mode == "issued":
        root, cert = load_cert(argv[2]), load_cert(argv[3])
        try:
            cert.verify_directly_issued_by(root)
        except Exception as e:  # noqa: BLE001 - any failure is the answer
            print(f"error: {e!r}")
            return 1
        print("ok")
        return 0
    if mode == "crl":
        root, crl = load_cert(argv[2]), load_crl(argv[3])
        if not crl.is_signature_valid(root.public_key()):
            print("error: CRL signature does not verify under the root key")
            return 1
        if crl.issuer != root.subject:
            print("error: CRL issuer is not the root's subject")
            return 1
        print("ok")
        for r in crl:
            print(format(r.serial_number, "x"))
        return 0
    if mode == "constraints":
        ext = load_cert(argv[2]).extensions.get_extension_for_class(x509.NameConstraints)
        print("critical" if ext.critical else "not critical")
        for kind, trees in (
            ("permitted", ext.value.permitted_subtrees),
            ("excluded", ext.value.excluded_subtrees),
        ):
            for t in trees or []:
                value = t.value.rfc4514_string() if isinstance(t, x509.DirectoryName) else t.value
                print(f"{kind} {type(t).__name__} {value}")
        return 0
    if mode == "policies":
        ext = load_cert(argv[2]).extensions.get_extension_for_class(x509.CertificatePolicies)
        print("critical" if ext.critical else "not critical")
        for p in ext.value:
            qualifiers = " with qualifiers" if p.policy_qualifiers else ""
            print(f"{p.policy_identifier.dotted_string}{qualifiers}")
        return 0
    print(f"error: unknown mode {mode}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
