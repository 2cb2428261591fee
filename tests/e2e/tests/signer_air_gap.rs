//! The air-gapped signer has no network code: its binary imports none of the C library's
//! network calls. The check reads the dynamic symbol table with `nm` (binutils, present
//! wherever Rust links). Anything std::net or a crate could use to open a network connection
//! needs `socket` (and `connect`, `bind` or `getaddrinfo`); `socketpair`, `sendmsg` and
//! `recvmsg` are allowed: std's process spawning uses them on a local socket pair. Not covered, by nature: a PKCS#11 module the operator loads at run time,
//! and libpcsclite's local socket to pcscd.
//!
//! The control: our virtual PIV card, which connects to vpcd over TCP, must show `connect`,
//! so a check that sees nothing cannot pass by accident.

use std::process::Command;

use kiwi_e2e::{bin, run, stderr, stdout};

const NETWORK: &[&str] = &[
    "socket",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "getaddrinfo",
    "gethostbyname",
    "sendto",
    "recvfrom",
];

fn network_imports(binary: &str) -> Vec<String> {
    let path = bin(binary);
    let o = run(Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(&path));
    assert!(o.status.success(), "nm {}: {}", path.display(), stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .filter(|s| NETWORK.contains(&s.as_str()))
        .collect()
}

#[test]
fn the_signer_imports_no_network_calls() {
    let control = network_imports("virtual-piv");
    assert!(
        control.iter().any(|s| s == "connect"),
        "the check does not see the virtual card's TCP connection: {control:?}"
    );
    let found = network_imports("kiwi-signer");
    assert!(
        found.is_empty(),
        "kiwi-signer imports network calls {found:?}; find the dependency that brought them in (cargo tree -p kiwi-signer -i <crate>) and remove it"
    );
}
