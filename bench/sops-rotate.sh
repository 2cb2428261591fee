#!/usr/bin/env bash
# Benchmark (not a test): kiwictl secrets rotate over a tree of 2,000 SOPS files in 100 state
# repos, against a loop of `sops rotate -i` over the same files, and beside it the X25519 floor
# (tooling/examples/x25519-floor.rs); and one decrypt against `sops -d`.
#
#   bench/sops-rotate.sh [FILES_PER_REPO] [REPOS]      (defaults 20 x 100 = 2,000 files)
#
# Needs scripts/install-test-deps (sops in .venv/bin). Builds kiwictl in release mode (into
# CARGO_TARGET_DIR when set).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
per_repo=${1:-20}
repos=${2:-100}
sops="${KIWI_VENV:-$root/.venv}/bin/sops"
[ -x "$sops" ] || { echo "sops-rotate.sh: $sops missing; run scripts/install-test-deps" >&2; exit 1; }
(cd "$root" && cargo build -q --release -p kiwi-tooling --bin kiwictl --example x25519-floor)
kiwictl="${CARGO_TARGET_DIR:-$root/target}/release/kiwictl"
floor_bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/x25519-floor"
keys="$root/tests/fixtures/sops/keys"
export SOPS_AGE_KEY_FILE="$keys/test1.agekey"
r1=$(grep -o 'age1[0-9a-z]*' "$keys/test1.agekey" | head -n1)

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# One realistic secret (comments, nested values, a certificate), encrypted by sops itself.
cp "$root/tests/fixtures/sops/plain/basic.yaml" "$work/seed.yaml"
"$sops" encrypt --age "$r1" "$work/seed.yaml" > "$work/seed.enc.yaml"
make_tree() { # make_tree DIR
  for r in $(seq 1 "$repos"); do
    local repo="$1/state-$r"
    mkdir -p "$repo/.git" "$repo/secrets"
    printf 'creation_rules:\n  - age: %s\n' "$r1" > "$repo/.sops.yaml"
    for f in $(seq 1 "$per_repo"); do cp "$work/seed.enc.yaml" "$repo/secrets/s$f.yaml"; done
  done
}
make_tree "$work/a"; make_tree "$work/b"
# Flush the new trees to disk first, so the kernel's writeback of them does not land inside
# kiwictl's syncfs calls in the timed run (the sops loop, which never syncs, would not notice).
sync
n=$((per_repo * repos))
echo "tree: $n SOPS files in $repos repos; $(nproc) cores"

now() { date +%s.%N; }
# Three full rotations of the same tree (the first over the files sops wrote); the ratio uses
# the median, so one slow fsync burst on a shared virtual disk does not decide the result.
k_runs=()
for _ in 1 2 3; do
  sync
  ta=$(now)
  "$kiwictl" secrets rotate --json "$work/a" > "$work/summary.json"
  tb=$(now)
  grep -q "\"changed\": $n" "$work/summary.json" || { echo "kiwictl did not rotate all files" >&2; cat "$work/summary.json" >&2; exit 1; }
  k_runs+=("$(python3 -c "print($tb - $ta)")")
done
# Every file must still decrypt, with sops itself, after the three rotations.
for f in "$work/a/state-1/secrets/s1.yaml" "$work/a/state-$repos/secrets/s$per_repo.yaml"; do
  "$sops" -d "$f" > /dev/null || { echo "sops cannot decrypt $f after kiwictl rotated it" >&2; exit 1; }
done
find "$work/b" -name '*.yaml' -path '*/secrets/*' > "$work/list"
t2=$(now)
while read -r f; do "$sops" rotate -i "$f" 2>/dev/null; done < "$work/list"
t3=$(now)

reps=50
one="$work/a/state-1/secrets/s1.yaml"
t4=$(now)
for _ in $(seq $reps); do "$kiwictl" secrets decrypt "$one" > /dev/null; done
t5=$(now)
for _ in $(seq $reps); do "$sops" -d "$one" > /dev/null; done
t6=$(now)

# What the data keys alone cost (one recipient per file here), in-process, over the cores.
floor=$("$floor_bin" "$n" 1)

python3 - "${k_runs[*]}" "$t2" "$t3" "$t4" "$t5" "$t6" "$n" "$reps" "$floor" <<'PY'
import statistics, sys
runs = [float(x) for x in sys.argv[1].split()]
t = [0.0, 0.0] + [float(x) for x in sys.argv[2:7]]; n = int(sys.argv[7]); reps = int(sys.argv[8])
floor = float(sys.argv[9])
k_rot, s_rot = statistics.median(runs), t[3] - t[2]
print("kiwictl rotations: " + ", ".join(f"{r:.2f} s" for r in runs) + " (median used)")
k_dec, s_dec = (t[5] - t[4]) / reps, (t[6] - t[5]) / reps
print(f"rotate {n} files: kiwictl {k_rot:.2f} s, sops loop {s_rot:.2f} s, ratio {s_rot / k_rot:.1f}x (goal >= 100x)")
print(f"X25519 floor for {n} files: {floor:.2f} s (1 unwrap + 2 multiplications per recipient, per file, over the cores); kiwictl is {k_rot / floor:.1f}x above it")
print(f"decrypt one file:  kiwictl {k_dec * 1000:.1f} ms, sops -d {s_dec * 1000:.1f} ms, ratio {s_dec / k_dec:.1f}x (goal >= 8x)")
PY
