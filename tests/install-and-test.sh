#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (SoftHSM, OpenSSL, curl, rsyslog,
# clang for the kryoptic token, apparmor_parser, setpriv, readelf, Python cryptography for the
# independent .byok unwrap, python3-venv for the API
# fuzzing, Debian's chromium and Node for the web console's browser tests) and runs the whole test suite: format, lints, tests, then the API document's
# validation and fuzzing (tests/api-fuzz.sh).
# Usage: tests/install-and-test.sh        (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."

need=(softhsm2 opensc openssl curl rsyslog rsyslog-openssl clang libclang-dev systemd apparmor util-linux binutils python3-venv python3-cryptography chromium)
# Node 18 or later runs playwright-core for tests/console_browser.rs; Debian's if none is there.
command -v npm >/dev/null || need+=(nodejs npm)
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

# The kryoptic PKCS#11 module (a conforming soft token for the two-step wrap tests) vendors and
# compiles OpenSSL, which takes minutes: it builds in the background while fmt, clippy and the
# next-format binary build, and the tests wait for it.
echo "== kryoptic PKCS#11 module: building in the background"
kryoptic_log="$(mktemp)"
cargo build --release --manifest-path tests/kryoptic-module/Cargo.toml \
    --target-dir tests/kryoptic-module/target >"$kryoptic_log" 2>&1 &
kryoptic_pid=$!
trap 'kill "$kryoptic_pid" 2>/dev/null || true' EXIT
export BYOKD_KRYOPTIC_MODULE="${BYOKD_KRYOPTIC_MODULE:-$PWD/tests/kryoptic-module/target/release/libbyokd_kryoptic_module.so}"

# playwright-core, pinned by tests/browser/package-lock.json; it drives /usr/bin/chromium and
# never downloads a browser.
echo "== npm ci (tests/browser)"
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== man pages: docs/man against the generated ones"
man_dir="$(mktemp -d)"
cargo run -q --bin byokctl -- generate-man "$man_dir" --config-reference docs/configuration.md >/dev/null
if ! diff -ru docs/man "$man_dir"; then
    echo "docs/man is stale: BYOKD_BLESS=1 cargo test --test ctl_docs, then commit docs/man" >&2
    exit 1
fi
rm -rf "$man_dir"
echo "== byokd-next-format-test (the next state format, for tests/system_upgrade.rs)"
cargo build --features test-next-format --bin byokd-next-format-test
echo "== kryoptic PKCS#11 module: waiting for the background build"
if ! wait "$kryoptic_pid"; then
    cat "$kryoptic_log" >&2
    echo "the kryoptic PKCS#11 module did not build (log above)" >&2
    exit 1
fi
tail -n 1 "$kryoptic_log"
rm -f "$kryoptic_log"
trap - EXIT
echo "== cargo test"
cargo test --workspace -- --test-threads="${BYOKD_TEST_THREADS:-2}"
echo "== API document: validation and fuzzing"
BYOKD_FUZZ_PREBUILT=1 BYOKD_FUZZ_SEED="${BYOKD_FUZZ_SEED:-1}" tests/api-fuzz.sh
