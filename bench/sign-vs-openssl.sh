#!/usr/bin/env bash
# Times `kiwi-signer sign` against `openssl x509 -req` signing the same CSR with a software key,
# both as whole processes (start-up, parsing, signing, writing), and prints the ratio.
# Also times `kiwi-signer status` (no key opened) to separate the passphrase KDF's share: the
# soft backend's key is age/scrypt-encrypted, and age calibrates scrypt to about a second.
#
# Usage: bench/sign-vs-openssl.sh [RUNS]   (default 10; release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-10}
(cd "$root" && cargo build --release --locked -q -p kiwi-signer --bins)
signer="$root/target/release/kiwi-signer"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

umask 077
echo "bench passphrase $(openssl rand -hex 8)" >pin
umask 022
"$signer" init --ca ca --backend soft --policy "$root/policies/root.yaml" --pin-file pin >/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out inter.key 2>/dev/null
openssl req -new -key inter.key -subj /CN=bench -out inter.csr
# openssl's side: the same P-384 root key, unencrypted PEM (what ad-hoc ceremonies did).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out osl-root.key 2>/dev/null
openssl req -x509 -new -key osl-root.key -subj /CN=osl-root -days 7305 -out osl-root.pem
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nnameConstraints=critical,permitted;DNS:bench.od.kiwistack.io\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >ext

now_ns() { date +%s%N; }
time_loop() { # name, command template using $i
  local start end
  start=$(now_ns)
  for i in $(seq 1 "$runs"); do eval "$2" >/dev/null 2>&1 || { echo "$1 failed on run $i" >&2; exit 1; }; done
  end=$(now_ns)
  echo $(( (end - start) / runs / 1000 ))  # microseconds per run
}

k=$(time_loop kiwi-signer '"$signer" sign --ca ca --csr inter.csr --slug bench --tier core --out k$i.pem --yes --pin-file pin')
o=$(time_loop openssl 'openssl x509 -req -in inter.csr -CA osl-root.pem -CAkey osl-root.key -days 1826 -sha384 -extfile ext -out o$i.pem')
s=$(time_loop status '"$signer" status --ca ca')
"$signer" ledger verify --ca ca >/dev/null

awk -v k="$k" -v o="$o" -v s="$s" -v runs="$runs" 'BEGIN {
  printf "runs: %d (each a whole process)\n", runs
  printf "kiwi-signer sign      %8.1f ms/run\n", k / 1000
  printf "openssl x509 -req     %8.1f ms/run\n", o / 1000
  printf "kiwi-signer status    %8.1f ms/run  (no key opened: start-up + ledger verification)\n", s / 1000
  printf "ratio sign/openssl    %8.1f x\n", k / o
}'
