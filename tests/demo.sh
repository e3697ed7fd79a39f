#!/usr/bin/env bash
# The byokd demo: a SoftHSM token, the Azure emulator (no network), byokd with an mTLS control
# socket, and byokctl driving the main job end to end: credential, key group, key in the HSM,
# "Cloud -> Synchronize", then `key list` showing the Azure version.
# Usage: tests/demo.sh        (installs softhsm2/openssl with apt-get if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need=(softhsm2 openssl)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== building byokd, byokctl and the Azure emulator"
cargo build -q -p byokd --bin byokd --bin byokctl && cargo build -q -p byokd-emulator --bin byokd-emulator
bin="$root/target/debug"
work=$(mktemp -d /tmp/byokd-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
echo "   work directory: $work"

echo "== SoftHSM token 'byokd-demo'"
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf"
softhsm2-util --init-token --free --label byokd-demo --so-pin 87654321 --pin 12345678 >/dev/null
umask 077
printf '12345678\n' > "$work/hsm-pin"

echo "== console PKI (CA, server certificate, two admins)"
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=byokd demo console CA" 2>/dev/null
issue() { # name, extension
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    printf '%s\n' "$2" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
}
issue server "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
issue alice "extendedKeyUsage=clientAuth"
issue bob "extendedKeyUsage=clientAuth"
cd "$root"

echo "== Azure emulator (Entra ID + Key Vault over TLS, vault 'byokd-demo')"
cat > "$work/emulator.toml" <<TOML
listen = "127.0.0.1:0"
delete_pending_ms = 1000
[key_pool]
rsa2048 = 2
rsa3072 = 0
rsa4096 = 0
[throttling]
enabled = true
[[apps]]
tenant = "11111111-2222-3333-4444-555555555555"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
secret = "demo-secret-value"
[[vaults]]
name = "byokd-demo"
recovery_level = "Recoverable+Purgeable"
TOML
"$bin/byokd-emulator" --config "$work/emulator.toml" --ca-out "$work/emulator-ca.pem" --request-log "$work/emulator-requests.jsonl" > "$work/emulator.out" 2> "$work/emulator.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/emulator.out" 2>/dev/null && break; sleep 0.1; done
emu=$(grep -o 'listening on [0-9.:]*' "$work/emulator.out" | awk '{print $3}')
echo "   emulator at $emu"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/byokd.toml" <<TOML
state_dir = "$work/state"
designated = true
allow_root = true

[hsm]
module = "${BYOKD_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
token_label = "byokd-demo"
pin_file = "$work/hsm-pin"
# SoftHSM's RFC 5649 wrap is non-conforming: a software token needs the host strategy.
allow_host_wrap = true

[hardening]
# A demo run by an ordinary user may not lock all its memory; the appliance uses "required".
mlock = "best-effort"

[azure]
cloud = "public"
extra_ca = ["$work/emulator-ca.pem"]
kek_size = 2048

[azure.resolve]
"login.microsoftonline.com" = "$emu"
"byokd-demo.vault.azure.net" = "$emu"

[control]
listen = "127.0.0.1:$port"
server_cert = "$work/server.pem"
server_key = "$work/server.key"
client_ca = "$work/ca.pem"

[[control.identities]]
name = "alice"
role = "admin"
cn = "alice"

[[control.identities]]
name = "bob"
role = "admin"
cn = "bob"
TOML
echo "== byokd check-config"
"$bin/byokd" --config "$work/byokd.toml" check-config
echo "== starting byokd"
BYOKD_LOG=info "$bin/byokd" --config "$work/byokd.toml" > "$work/byokd.log" 2>&1 &
pids+=($!)
export BYOKCTL_SERVER="https://localhost:$port" BYOKCTL_CA="$work/ca.pem" BYOKCTL_CERT="$work/alice.pem" BYOKCTL_KEY="$work/alice.key"
for _ in $(seq 100); do "$bin/byokctl" status >/dev/null 2>&1 && break; sleep 0.2; done
ctl() { echo "\$ byokctl $*"; "$bin/byokctl" "$@"; }
ctl status
printf 'demo-secret-value\n' > "$work/client-secret.txt"
ctl credential add demo-app --tenant-id 11111111-2222-3333-4444-555555555555 --client-id aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee --secret-file "$work/client-secret.txt"
rm -f "$work/client-secret.txt"
ctl credential list
ctl group create payments --credential demo-app --vault byokd-demo --key-type RSA-2048
ctl key create payments payments-2026
ctl key list payments
ctl key sync payments payments-2026
ctl key list payments
ctl job list
echo
echo "Demo finished. byokd log: $work/byokd.log; emulator requests: $work/emulator-requests.jsonl"
