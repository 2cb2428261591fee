//! `kiwi-signer preflight` judged in real network namespaces (`unshare -n -m`, sysfs mounted
//! afresh so `/sys/class/net` shows the namespace's own interfaces), set up with iproute2:
//! only loopback passes; one end of a veth pair set up without carrier fails; a route that is
//! not a default route fails. Needs root; without root or a working `unshare` the test says why
//! and does nothing.

use std::process::{Command, Output};

use kiwi_e2e::{bin, cannot_unshare, path_str, run, stderr, stdout};

/// Runs `setup` (shell, iproute2) in a fresh network and mount namespace with its own sysfs,
/// then `kiwi-signer preflight --json` there.
fn preflight_in_netns(setup: &str) -> (Output, serde_json::Value) {
    let signer = bin("kiwi-signer");
    let script = format!(
        "set -e; mount -t sysfs sysfs /sys; ip link set lo up; {setup}; exec {} preflight --json",
        path_str(&signer)
    );
    let o = run(Command::new("unshare").args(["-n", "-m", "sh", "-c", &script]));
    let json = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| {
        panic!(
            "preflight printed no JSON ({e}): {}{}",
            stdout(&o),
            stderr(&o)
        )
    });
    (o, json)
}

fn check<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json.as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no `{name}` check in {json}"))
}

#[test]
fn preflight_fails_in_namespaces_that_are_one_step_from_a_network() {
    if let Some(why) = cannot_unshare() {
        println!("SKIPPED signer preflight namespace test: {why}");
        return;
    }

    // Only loopback (up): passes.
    let (o, json) = preflight_in_netns("true");
    assert!(o.status.success(), "{json:#}\n{}", stderr(&o));

    // One end of a veth pair set up, its peer down: no carrier, but one `ip link set` away.
    let (o, json) = preflight_in_netns(
        "ip link add v0 type veth peer name v1; ip link set v0 up; test \"$(cat /sys/class/net/v0/carrier 2>/dev/null || echo 0)\" != 1",
    );
    assert!(!o.status.success(), "{json:#}");
    let c = check(&json, "network interfaces");
    assert_eq!(c["ok"], false, "{json:#}");
    assert!(
        c["detail"].as_str().is_some_and(|d| d.contains("v0 is up")),
        "{json:#}"
    );
    assert!(!c["detail"].to_string().contains("v1"), "{json:#}");
    assert!(stderr(&o).contains("preflight failed"), "{}", stderr(&o));

    // Routes that are not default routes, IPv4 and IPv6.
    let (o, json) = preflight_in_netns(
        "ip link add v0 type veth peer name v1; ip link set v0 up; ip route add 10.10.0.0/16 dev v0; ip -6 route add 2001:db8::/64 dev v0",
    );
    assert!(!o.status.success(), "{json:#}");
    let c = check(&json, "routes");
    assert_eq!(c["ok"], false, "{json:#}");
    let detail = c["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("IPv4 route 10.10.0.0/16 on v0")
            && detail.contains("IPv6 route 2001:db8::/64 on v0")
            && !detail.contains("default"),
        "{json:#}"
    );
}
