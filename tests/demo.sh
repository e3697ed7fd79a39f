#!/usr/bin/env bash
# The byokd demo: a SoftHSM token, the Azure emulator (no network), byokd with an mTLS control
# socket, and byokctl driving the main job end to end: credential, key group, key in the HSM,
# "Cloud -> Synchronize", then `key list` showing the Azure version.
# Usage: tests/demo.sh        (installs softhsm2/openssl with apt-get if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/rig.sh

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
rig_init
rig_build
echo "   work directory: $work"
echo "== SoftHSM token 'byokd-demo'"
rig_softhsm byokd-demo
echo "== console PKI (CA, server certificate, two admins)"
rig_pki alice bob
echo "== Azure emulator (Entra ID + Key Vault over TLS, vault 'byokd-demo')"
rig_emulator byokd-demo demo-secret-value
echo "   emulator at $emu"
rig_config byokd-demo byokd-demo alice bob
echo "== byokd check-config"
"$bin/byokd" --config "$work/byokd.toml" check-config
echo "== starting byokd"
rig_byokd alice
ctl() { echo "\$ byokctl $*"; "$bin/byokctl" "$@"; }
ctl status
(umask 077 && printf 'demo-secret-value\n' > "$work/client-secret.txt")
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
