//! The air-gap preflight run before a ceremony touches a key: is this laptop really offline,
//! and is its clock plausible?
//!
//! It reads the kernel's view of the machine and never opens a socket, so the signer stays
//! free of network code:
//! - every interface but loopback must be administratively down (IFF_UP clear in
//!   `/sys/class/net/*/flags`): an interface that is up without a carrier is one cable away
//!   from a network;
//! - no route may use an interface other than loopback, IPv4 (`/proc/net/route`) or IPv6
//!   (`/proc/net/ipv6_route`), default or not;
//! - every radio must be blocked: each `/sys/class/rfkill` switch soft- or hard-blocked, and
//!   no Bluetooth controller (`/sys/class/bluetooth`) or Wi-Fi interface without a switch.
//!
//! A check that cannot be read counts as failed, so a preflight can only pass on evidence.
//! [`run`] adds the clock check for `kiwi-signer preflight`; [`enforce`] is what an operation
//! that uses the root key calls first.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;

/// One check's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, and what to do when it failed.
    pub detail: String,
}

impl Check {
    fn new(name: &str, result: Result<Vec<String>, String>, ok: &str, advice: &str) -> Self {
        let (ok, detail) = match result {
            Ok(found) if found.is_empty() => (true, ok.to_string()),
            Ok(found) => (false, format!("{}; {advice}", found.join(", "))),
            Err(e) => (false, e),
        };
        Check {
            name: name.to_string(),
            ok,
            detail,
        }
    }
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

/// `IFF_UP` in an interface's flags.
const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK` in an interface's flags.
const IFF_LOOPBACK: u32 = 0x8;

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Entry names of a directory, sorted; `Ok(None)` when it does not exist.
fn entries(dir: &Path) -> Result<Option<Vec<String>>, String> {
    let list = match std::fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut names = Vec::new();
    for e in list {
        let e = e.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(Some(names))
}

/// Interfaces other than loopback with IFF_UP set, whatever their carrier.
fn interfaces_up(host: &Host) -> Result<Vec<String>, String> {
    let dir = host.path("/sys/class/net");
    let names = entries(&dir)?.ok_or_else(|| format!("{} does not exist", dir.display()))?;
    let mut up = Vec::new();
    for name in names {
        let flags_file = dir.join(&name).join("flags");
        let text = read(&flags_file)?;
        let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
            .map_err(|_| format!("{}: not interface flags", flags_file.display()))?;
        if flags & IFF_LOOPBACK == 0 && flags & IFF_UP != 0 {
            let state =
                std::fs::read_to_string(dir.join(&name).join("operstate")).unwrap_or_default();
            up.push(format!("{name} is up ({})", state.trim()));
        }
    }
    Ok(up)
}

/// Routes over any interface but loopback, IPv4 and IPv6, default or not.
fn routes(host: &Host) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let v4 = host.path("/proc/net/route");
    for line in read(&v4)?.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        if f[0] == "lo" {
            continue;
        }
        // The kernel prints each address as the native-endian number holding its bytes.
        let addr = |hex: &str| {
            u32::from_str_radix(hex, 16)
                .map(|n| Ipv4Addr::from(n.to_ne_bytes()))
                .map_err(|_| format!("{}: cannot parse `{line}`", v4.display()))
        };
        let (dest, gateway, mask) = (addr(f[1])?, addr(f[2])?, addr(f[7])?);
        let prefix = mask.to_bits().count_ones();
        let via = if gateway.is_unspecified() {
            String::new()
        } else {
            format!(" via {gateway}")
        };
        if prefix == 0 {
            found.push(format!("IPv4 default route{via} on {}", f[0]));
        } else {
            found.push(format!("IPv4 route {dest}/{prefix}{via} on {}", f[0]));
        }
    }
    // IPv6 may be disabled entirely (no file): that is no route.
    let v6 = host.path("/proc/net/ipv6_route");
    if v6.exists() {
        for line in read(&v6)?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[9] == "lo" {
                continue;
            }
            let dest = u128::from_str_radix(f[0], 16).map(Ipv6Addr::from);
            let prefix = u8::from_str_radix(f[1], 16);
            match (dest, prefix) {
                (Ok(_), Ok(0)) => found.push(format!("IPv6 default route on {}", f[9])),
                (Ok(d), Ok(p)) => found.push(format!("IPv6 route {d}/{p} on {}", f[9])),
                _ => return Err(format!("{}: cannot parse `{line}`", v6.display())),
            }
        }
    }
    Ok(found)
}

/// Whether a sysfs device directory holds an rfkill switch (`rfkillN`), and if so whether
/// one is blocked.
fn switch_blocked(dir: &Path) -> Result<Option<bool>, String> {
    let Some(names) = entries(dir)? else {
        return Ok(None);
    };
    let mut any = None;
    for n in names.iter().filter(|n| n.starts_with("rfkill")) {
        let blocked = rfkill_blocked(&dir.join(n))?;
        any = Some(any.unwrap_or(false) || blocked);
    }
    Ok(any)
}

fn rfkill_blocked(dir: &Path) -> Result<bool, String> {
    let soft = read(&dir.join("soft"))?;
    let hard = read(&dir.join("hard"))?;
    Ok(soft.trim() == "1" || hard.trim() == "1")
}

/// Radios that are not blocked: rfkill switches, Bluetooth controllers and Wi-Fi interfaces
/// with no switch at all.
fn radios(host: &Host) -> Result<Vec<String>, String> {
    let mut open = Vec::new();
    let rfkill = host.path("/sys/class/rfkill");
    for n in entries(&rfkill)?.unwrap_or_default() {
        let d = rfkill.join(&n);
        if !rfkill_blocked(&d)? {
            let kind = std::fs::read_to_string(d.join("type")).unwrap_or_default();
            let name = std::fs::read_to_string(d.join("name")).unwrap_or_default();
            open.push(format!(
                "{n} ({} {}) is not blocked",
                kind.trim(),
                name.trim()
            ));
        }
    }
    let bt = host.path("/sys/class/bluetooth");
    // `hci0` is a controller; `hci0:12` is a connection of it.
    for n in entries(&bt)?.unwrap_or_default() {
        if !n.contains(':') && switch_blocked(&bt.join(&n))?.is_none() {
            open.push(format!("Bluetooth {n} has no rfkill switch"));
        }
    }
    let net = host.path("/sys/class/net");
    for n in entries(&net)?.unwrap_or_default() {
        let d = net.join(&n);
        if (d.join("wireless").exists() || d.join("phy80211").exists())
            && switch_blocked(&d.join("phy80211"))?.is_none()
        {
            open.push(format!("Wi-Fi {n} has no rfkill switch"));
        }
    }
    Ok(open)
}

/// The air-gap checks: interfaces, routes, radios (no clock).
pub fn air_gap(host: &Host) -> Vec<Check> {
    vec![
        Check::new(
            "network interfaces",
            interfaces_up(host),
            "only loopback is up",
            "bring them down (`ip link set DEV down`) or remove the hardware, then run preflight again",
        ),
        Check::new(
            "routes",
            routes(host),
            "no route but loopback",
            "this machine can reach a network: bring the interfaces down",
        ),
        Check::new(
            "radios",
            radios(host),
            "no radio, or every radio blocked",
            "block them (`rfkill block all`) or remove the hardware",
        ),
    ]
}

/// What the air-gap preflight found before an operation used the root key, for its ledger
/// entry. An empty `failed` means the machine looked offline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreflightRecord {
    /// The checks that failed (each with what was found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Check>,
    /// Why the operation went ahead anyway, when `failed` is not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overridden: Option<Override>,
}

/// Why an operation used the root key although the preflight failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Override {
    /// A hardware backend, with `--allow-network` given.
    AllowNetwork,
    /// The software backend (rehearsals on ordinary machines): warn only.
    SoftBackend,
}

impl PreflightRecord {
    /// Whether every air-gap check passed.
    pub fn clean(&self) -> bool {
        self.failed.is_empty()
    }

    /// The warning to print when checks failed and the operation goes ahead, if any.
    pub fn warning(&self) -> Option<String> {
        let why = match self.overridden? {
            Override::AllowNetwork => {
                "--allow-network was given; the ledger entry records that the root key was used on a connected machine"
            }
            Override::SoftBackend => {
                "the software backend is for rehearsals, so this is a warning only; recorded in the ledger entry"
            }
        };
        Some(format!(
            "air-gap preflight failed ({}); {why}",
            describe(&self.failed)
        ))
    }
}

/// `name: detail` of each check, joined.
pub fn describe(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The air-gap preflight an operation that uses the root key runs before it asks for a PIN:
/// with a hardware backend (`hardware`), a failed check refuses the operation
/// ([`Error::NotAirGapped`]) unless the operator passed `--allow-network`; with the software
/// backend it only warns. The pipeline prints [`PreflightRecord::warning`] when there is one
/// and stores the record in the operation's ledger entry, so an auditor sees every use of the
/// root on a connected machine.
pub fn enforce(hardware: bool, allow_network: bool) -> Result<PreflightRecord, Error> {
    enforce_on(&Host::default(), hardware, allow_network)
}

/// [`enforce`] on the given host (a fixture directory in tests).
pub fn enforce_on(
    host: &Host,
    hardware: bool,
    allow_network: bool,
) -> Result<PreflightRecord, Error> {
    let failed: Vec<Check> = air_gap(host).into_iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        return Ok(PreflightRecord::default());
    }
    let overridden = match (hardware, allow_network) {
        (true, false) => return Err(Error::NotAirGapped(failed)),
        (true, true) => Override::AllowNetwork,
        (false, _) => Override::SoftBackend,
    };
    Ok(PreflightRecord {
        failed,
        overridden: Some(overridden),
    })
}

/// Runs every check. `newest_ledger_entry` is the CA's newest ledger time, if a CA is given.
pub fn run(
    host: &Host,
    now: OffsetDateTime,
    newest_ledger_entry: Option<OffsetDateTime>,
) -> Vec<Check> {
    let mut checks = air_gap(host);
    let year = now.year();
    let t = crate::ledger::fmt_time;
    checks.push(match newest_ledger_entry {
        Some(newest) if now < newest => Check {
            name: "clock".into(),
            ok: false,
            detail: format!(
                "the clock ({}) is earlier than the newest ledger entry ({}); set it to UTC from a trusted source with the witness",
                t(now),
                t(newest)
            ),
        },
        _ if !(2024..2100).contains(&year) => Check {
            name: "clock".into(),
            ok: false,
            detail: format!("the clock says {}; set it to the correct UTC time", t(now)),
        },
        Some(newest) => Check {
            name: "clock".into(),
            ok: true,
            detail: format!(
                "{}, after the newest ledger entry ({}); the witness confirms the date",
                t(now),
                t(newest)
            ),
        },
        None => Check {
            name: "clock".into(),
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
            by("network interfaces")
                .detail
                .contains("eth0 is up (up), tun0 is up (unknown)"),
            "{checks:#?}"
        );
        assert!(!by("routes").ok);
        assert!(by("routes").detail.contains("IPv4") && by("routes").detail.contains("IPv6"));
        assert!(!by("clock").ok);
    }

    #[test]
    fn up_without_carrier_and_non_default_routes_fail() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // One end of a veth pair set up, its peer elsewhere: no carrier, but IFF_UP.
        let host = fixture(
            tmp.path(),
            &[("lo", "unknown", "0x9"), ("v0", "lowerlayerdown", "0x1003")],
            ROUTE_HEADER,
            None,
        );
        let failed: Vec<_> = air_gap(&host).into_iter().filter(|c| !c.ok).collect();
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(
            failed[0].detail.contains("v0 is up (lowerlayerdown)"),
            "{failed:#?}"
        );

        // Interfaces down, but routes that are not default ones (and loopback's, which pass).
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = fixture(
            tmp.path(),
            &[("lo", "unknown", "0x9"), ("v0", "down", "0x1002")],
            &format!("{ROUTE_HEADER}v0\t0000090A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\nlo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"),
            Some("20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001       v0\n00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"),
        );
        let checks = air_gap(&host);
        let routes = checks.iter().find(|c| c.name == "routes").expect("check");
        assert!(!routes.ok);
        assert!(
            routes
                .detail
                .starts_with("IPv4 route 10.9.0.0/24 on v0, IPv6 route 2001:db8::/64 on v0;"),
            "{routes:#?}"
        );
        assert!(
            checks.iter().filter(|c| c.name != "routes").all(|c| c.ok),
            "{checks:#?}"
        );
    }

    fn radio(dir: &Path, path: &str, kind: &str, soft: &str) {
        let d = dir.join(path);
        std::fs::create_dir_all(&d).expect("mkdir");
        for (f, v) in [
            ("type", kind),
            ("name", "phy0"),
            ("soft", soft),
            ("hard", "0"),
        ] {
            std::fs::write(d.join(f), format!("{v}\n")).expect("write");
        }
    }

    #[test]
    fn radios_must_be_blocked() {
        let radios_check = |dir: &Path| {
            air_gap(&Host::at(dir))
                .into_iter()
                .find(|c| c.name == "radios")
                .expect("check")
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        fixture(tmp.path(), &[("lo", "unknown", "0x9")], ROUTE_HEADER, None);
        assert!(radios_check(tmp.path()).ok, "no radios at all passes");
        radio(tmp.path(), "sys/class/rfkill/rfkill0", "wlan", "0");
        let c = radios_check(tmp.path());
        assert!(
            !c.ok && c.detail.contains("rfkill0 (wlan phy0) is not blocked"),
            "{c:#?}"
        );
        radio(tmp.path(), "sys/class/rfkill/rfkill0", "wlan", "1");
        assert!(radios_check(tmp.path()).ok);
        // A Bluetooth controller without a switch, then with a blocked one.
        std::fs::create_dir_all(tmp.path().join("sys/class/bluetooth/hci0")).expect("mkdir");
        std::fs::create_dir_all(tmp.path().join("sys/class/bluetooth/hci0:12")).expect("mkdir");
        let c = radios_check(tmp.path());
        assert!(
            !c.ok && c.detail.contains("Bluetooth hci0 has no rfkill switch"),
            "{c:#?}"
        );
        assert!(!c.detail.contains("hci0:12"), "{c:#?}");
        radio(
            tmp.path(),
            "sys/class/bluetooth/hci0/rfkill1",
            "bluetooth",
            "1",
        );
        assert!(radios_check(tmp.path()).ok);
        // A Wi-Fi interface without a switch.
        std::fs::create_dir_all(tmp.path().join("sys/class/net/wlan0/wireless")).expect("mkdir");
        std::fs::write(tmp.path().join("sys/class/net/wlan0/flags"), "0x1002\n").expect("write");
        let c = radios_check(tmp.path());
        assert!(
            !c.ok && c.detail.contains("Wi-Fi wlan0 has no rfkill switch"),
            "{c:#?}"
        );
    }

    #[test]
    fn enforce_refuses_hardware_records_overrides_and_warns_for_soft() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let clean = fixture(tmp.path(), &[("lo", "unknown", "0x9")], ROUTE_HEADER, None);
        for (hw, allow) in [(true, false), (true, true), (false, false)] {
            let r = enforce_on(&clean, hw, allow).expect("an offline machine passes");
            assert!(r.clean() && r.warning().is_none());
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let online = fixture(
            tmp.path(),
            &[("lo", "unknown", "0x9"), ("eth0", "up", "0x1003")],
            ROUTE_HEADER,
            None,
        );
        let err = enforce_on(&online, true, false).expect_err("hardware refuses");
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::NotAirGapped(f) if f.len() == 1)
                && msg.contains("eth0 is up")
                && msg.contains("--allow-network"),
            "{msg}"
        );
        let r = enforce_on(&online, true, true).expect("--allow-network goes ahead");
        assert_eq!(r.overridden, Some(Override::AllowNetwork));
        assert_eq!(r.failed.len(), 1);
        assert!(r.warning().expect("warning").contains("eth0 is up"));
        let json = serde_json::to_string(&r).expect("JSON");
        assert_eq!(
            serde_json::from_str::<PreflightRecord>(&json).expect("round trip"),
            r
        );
        let r = enforce_on(&online, false, false).expect("soft warns only");
        assert_eq!(r.overridden, Some(Override::SoftBackend));
        assert!(r.warning().expect("warning").contains("warning only"));
    }

    #[test]
    fn unreadable_evidence_fails() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let checks = run(&Host::at(tmp.path()), OffsetDateTime::now_utc(), None);
        assert!(!passed(&checks));
    }
}
