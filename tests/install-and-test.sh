#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (SoftHSM, OpenSSL, curl, rsyslog,
# clang for the kryoptic token, apparmor_parser, setpriv, readelf) and runs the whole test
# suite: format, lints, tests.
# Usage: tests/install-and-test.sh        (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."

need=(softhsm2 opensc openssl curl rsyslog rsyslog-openssl clang libclang-dev systemd apparmor util-linux binutils)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export BYOKD_PKCS11_MODULE="${BYOKD_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
[ -f "$BYOKD_PKCS11_MODULE" ] || { echo "SoftHSM module not found at $BYOKD_PKCS11_MODULE" >&2; exit 1; }

echo "== kryoptic PKCS#11 module (a conforming soft token for the two-step wrap tests)"
cargo build --release --manifest-path tests/kryoptic-module/Cargo.toml --target-dir tests/kryoptic-module/target
export BYOKD_KRYOPTIC_MODULE="${BYOKD_KRYOPTIC_MODULE:-$PWD/tests/kryoptic-module/target/release/libbyokd_kryoptic_module.so}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== byokd-next-format-test (the next state format, for tests/system_upgrade.rs)"
cargo build --features test-next-format --bin byokd-next-format-test
echo "== cargo test"
cargo test --workspace -- --test-threads="${BYOKD_TEST_THREADS:-2}"
