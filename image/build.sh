#!/usr/bin/env bash
# Builds the signed byokd firmware upgrade bundle.
#
# Usage: image/build.sh [--bin-dir DIR] VERSION SIGNING_KEY OUT
#
#   VERSION      the bundle version (letters, digits, . - + _)
#   SIGNING_KEY  Ed25519 private key, PEM (openssl genpkey -algorithm ed25519 -out key.pem)
#   OUT          the bundle file to write (a ustar archive)
#   --bin-dir    package the byokd and byokctl found in DIR instead of building them; the tests
#                use this to package the debug build. Without it, the release binaries are built
#                with the signing key's public half baked in (BYOKD_UPGRADE_PUBKEY) and checked
#                against hardening/checksec.golden.
#
# The bundle holds MANIFEST (version, state format, mode + SHA-256 + path of every file),
# MANIFEST.sig (Ed25519 over the manifest bytes) and payload/: bin/byokd, bin/byokctl, the unit
# files and the default configuration. See image/README.md.
set -euo pipefail

bin_dir=""
if [ "${1:-}" = "--bin-dir" ]; then
    bin_dir="$2"
    shift 2
fi
if [ "$#" -ne 3 ]; then
    sed -n '3,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
version="$1" key="$2" out="$3"
repo="$(cd "$(dirname "$0")/.." && pwd)"

case "$version" in
    ""|*[!A-Za-z0-9.+_-]*) echo "build.sh: bad version '$version'" >&2; exit 2 ;;
esac
[ -r "$key" ] || { echo "build.sh: cannot read the signing key $key" >&2; exit 2; }
pubkey="$(openssl pkey -in "$key" -pubout -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n')"
[ "${#pubkey}" -eq 64 ] || { echo "build.sh: $key is not an Ed25519 private key" >&2; exit 2; }

if [ -z "$bin_dir" ]; then
    echo "== cargo build --release (upgrade key $pubkey)"
    (cd "$repo" && BYOKD_UPGRADE_PUBKEY="$pubkey" cargo build --release --locked --bin byokd --bin byokctl)
    bin_dir="$repo/target/release"
    echo "== checksec of the release binary against hardening/checksec.golden"
    diff -u "$repo/hardening/checksec.golden" <("$repo/hardening/checksec.sh" "$bin_dir/byokd")
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
p="$stage/payload"
install -d "$p/bin" "$p/systemd" "$p/etc" "$p/hardening"
for b in byokd byokctl; do
    install -m 0755 "$bin_dir/$b" "$p/bin/$b"
    # Debug info is not shipped (the tests package the debug build); scripts are left alone.
    if [ "$(head -c4 "$p/bin/$b" | od -An -c | tr -d " ")" = "177ELF" ]; then strip --strip-debug "$p/bin/$b"; fi
done
install -m 0644 "$repo/systemd/byokd.service" "$p/systemd/byokd.service"
install -m 0644 "$repo/systemd/byokd.sysusers" "$p/systemd/byokd.sysusers"
install -m 0644 "$repo/systemd/byokd.tmpfiles" "$p/systemd/byokd.tmpfiles"
install -m 0644 "$repo/systemd/byokd.toml" "$p/etc/byokd.toml"
install -m 0644 "$repo/hardening/apparmor/opt.byokd.bin.byokd" "$p/hardening/apparmor.byokd"
install -m 0644 "$repo/hardening/sysctl/90-byokd.conf" "$p/hardening/sysctl-90-byokd.conf"

# The state format is the one the packaged binary writes.
state_format="$("$p/bin/byokd" version | sed -n 's/.*(state format \([0-9][0-9]*\)).*/\1/p')"
[ -n "$state_format" ] || { echo "build.sh: $bin_dir/byokd did not report its state format" >&2; exit 1; }

{
    echo "byokd-bundle 1"
    echo "version $version"
    echo "state-format $state_format"
    (cd "$stage/payload" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) | while read -r f; do
        mode="$(stat -c '%a' "$p/$f")"
        sum="$(sha256sum "$p/$f" | cut -d' ' -f1)"
        echo "file 0$mode $sum $f"
    done
} > "$stage/MANIFEST"
openssl pkeyutl -sign -inkey "$key" -rawin -in "$stage/MANIFEST" -out "$stage/MANIFEST.sig"

files=(MANIFEST MANIFEST.sig)
while read -r f; do files+=("$f"); done < <(cd "$stage" && find payload -type f | LC_ALL=C sort)
tar --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out" -C "$stage" "${files[@]}"

# The packaged byokd must trust this key, or this firmware could not be upgraded again.
"$p/bin/byokd" upgrade --verify-only "$out"
echo "wrote $out: byokd $version, state format $state_format"
