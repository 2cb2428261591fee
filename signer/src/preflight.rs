//! The air-gap preflight run before a ceremony touches a key: is this laptop really offline,
//! and is its clock plausible?
//!
//! It reads the kernel's view of the machine (`/sys/class/net`, `/proc/net/route`,
//! `/proc/net/ipv6_route`) and never opens a socket: the signer stays free of network code.
//! A check that cannot be read counts as failed, so a preflight can only pass on evidence.

use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;

/// One check's outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, and what to do when it failed.
    pub detail: String,
}

/// Where the kernel's files are (`/` on a real machine; a fixture directory in tests).
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            root: PathBuf::from("/"),
        }
    }
}

impl Host {
    /// A host whose `/sys` and `/proc` live under `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Host { root: root.into() }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
}

/// Network interfaces other than loopback that are up (operstate `up`, or `unknown` with the
/// IFF_UP flag, which is how many virtual and Wi-Fi links report).
fn interfaces_up(host: &Host) -> Result<Vec<String>, String> {
    let dir = host.path("/sys/class/net");
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut up = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(e.path().join(f)).unwrap_or_default();
        let state = read("operstate");
        let flags =
            u32::from_str_radix(read("flags").trim().trim_start_matches("0x"), 16).unwrap_or(0);
        if state.trim() == "up" || (state.trim() == "unknown" && flags & 0x1 == 1) {
            up.push(name);
        }
    }
    up.sort();
    Ok(up)
}

/// Default routes (IPv4 destination 0.0.0.0/0, IPv6 ::/0) on non-loopback interfaces.
fn default_routes(host: &Host) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let v4 = host.path("/proc/net/route");
    let text =
        std::fs::read_to_string(&v4).map_err(|e| format!("cannot read {}: {e}", v4.display()))?;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo" {
            found.push(format!("IPv4 default route via {}", f[0]));
        }
    }
    // IPv6 may be disabled entirely (no file): that is no route.
    if let Ok(text) = std::fs::read_to_string(host.path("/proc/net/ipv6_route")) {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 10 && f[0] == "0".repeat(32) && f[1] == "00" && f[9] != "lo" {
                found.push(format!("IPv6 default route via {}", f[9]));
            }
        }
    }
    Ok(found)
}

/// Runs every check. `newest_ledger_entry` is the CA's newest ledger time, if a CA is given.
pub fn run(
    host: &Host,
    now: OffsetDateTime,
    newest_ledger_entry: Option<OffsetDateTime>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(match interfaces_up(host) {
        Ok(up) if up.is_empty() => Check {
            name: "network interfaces",
            ok: true,
            detail: "only loopback is up".into(),
        },
        Ok(up) => Check {
            name: "network interfaces",
            ok: false,
            detail: format!(
                "up: {}; disconnect the cables and switch off Wi-Fi/Bluetooth (or remove the hardware), then run preflight again",
                up.join(", ")
            ),
        },
        Err(e) => Check {
            name: "network interfaces",
            ok: false,
            detail: e,
        },
    });
    checks.push(match default_routes(host) {
        Ok(r) if r.is_empty() => Check {
            name: "routes",
            ok: true,
            detail: "no default route".into(),
        },
        Ok(r) => Check {
            name: "routes",
            ok: false,
            detail: format!("{}; this machine can reach a network", r.join(", ")),
        },
        Err(e) => Check {
            name: "routes",
            ok: false,
            detail: e,
        },
    });
    let year = now.year();
    let t = crate::ledger::fmt_time;
    checks.push(match newest_ledger_entry {
        Some(newest) if now < newest => Check {
            name: "clock",
            ok: false,
            detail: format!(
                "the clock ({}) is earlier than the newest ledger entry ({}); set it to UTC from a trusted source with the witness",
                t(now),
                t(newest)
            ),
        },
        _ if !(2024..2100).contains(&year) => Check {
            name: "clock",
            ok: false,
            detail: format!("the clock says {}; set it to the correct UTC time", t(now)),
        },
        Some(newest) => Check {
            name: "clock",
            ok: true,
            detail: format!(
                "{}, after the newest ledger entry ({}); the witness confirms the date",
                t(now),
                t(newest)
            ),
        },
        None => Check {
            name: "clock",
            ok: true,
            detail: format!(
                "{}; the witness confirms the date (no CA given to compare with)",
                t(now)
            ),
        },
    });
    checks
}

/// Whether every check passed.
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.ok)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Writes a fixture host for tests: interfaces `(name, operstate, flags)` and route file texts.
    fn fixture(
        dir: &Path,
        ifaces: &[(&str, &str, &str)],
        route: &str,
        route6: Option<&str>,
    ) -> Host {
        for (name, state, flags) in ifaces {
            let d = dir.join("sys/class/net").join(name);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("operstate"), format!("{state}\n")).expect("write");
            std::fs::write(d.join("flags"), format!("{flags}\n")).expect("write");
        }
        std::fs::create_dir_all(dir.join("sys/class/net")).expect("mkdir");
        std::fs::create_dir_all(dir.join("proc/net")).expect("mkdir");
        std::fs::write(dir.join("proc/net/route"), route).expect("write");
        if let Some(r6) = route6 {
            std::fs::write(dir.join("proc/net/ipv6_route"), r6).expect("write");
        }
        Host::at(dir)
    }

    const ROUTE_HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn an_offline_laptop_passes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = fixture(
            tmp.path(),
            &[
                ("lo", "unknown", "0x9"),
                ("eth0", "down", "0x1002"),
                ("wlan0", "dormant", "0x1002"),
            ],
            ROUTE_HEADER,
            None,
        );
        let now = OffsetDateTime::now_utc();
        let checks = run(&host, now, Some(now - time::Duration::days(3)));
        assert!(passed(&checks), "{checks:#?}");
    }

    #[test]
    fn a_link_a_route_or_a_bad_clock_fails_with_advice() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = fixture(
            tmp.path(),
            &[("lo", "unknown", "0x9"), ("eth0", "up", "0x1003"), ("tun0", "unknown", "0x1091")],
            &format!("{ROUTE_HEADER}eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"),
            Some("00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000064 00000001 00000000 00000003 eth0\n"),
        );
        let now = OffsetDateTime::now_utc();
        let checks = run(&host, now, Some(now + time::Duration::hours(1)));
        assert!(!passed(&checks));
        let by = |n: &str| checks.iter().find(|c| c.name == n).expect("check");
        assert!(!by("network interfaces").ok);
        assert!(
            by("network interfaces").detail.contains("eth0, tun0"),
            "{checks:#?}"
        );
        assert!(!by("routes").ok);
        assert!(by("routes").detail.contains("IPv4") && by("routes").detail.contains("IPv6"));
        assert!(!by("clock").ok);
    }

    #[test]
    fn unreadable_evidence_fails() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let checks = run(&Host::at(tmp.path()), OffsetDateTime::now_utc(), None);
        assert!(!passed(&checks));
    }
}
