#!/usr/bin/env bash
# checksec-style report of an ELF binary, from readelf alone, one property a line:
#   pie, relro, nx, stack-canary, rpath, runpath, textrel
# Usage: hardening/checksec.sh BINARY
# The release byokd must print exactly hardening/checksec.golden (image/build.sh refuses to
# package otherwise; tests/system_checksec.rs compares the built binary in CI).
set -euo pipefail
bin="${1:?usage: checksec.sh BINARY}"
[ -f "$bin" ] || { echo "checksec.sh: no such file: $bin" >&2; exit 2; }
header="$(readelf -W -h "$bin")"
phdrs="$(readelf -W -l "$bin")"
dynamic="$(readelf -W -d "$bin")"
dynsyms="$(readelf -W --dyn-syms "$bin")"

if grep -q 'Type:[[:space:]]*DYN' <<<"$header" && grep -q 'INTERP' <<<"$phdrs"; then
    echo "pie: yes"
else
    echo "pie: no"
fi
if grep -q 'GNU_RELRO' <<<"$phdrs"; then
    if grep -Eq '\(BIND_NOW\)|\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$dynamic"; then
        echo "relro: full"
    else
        echo "relro: partial"
    fi
else
    echo "relro: none"
fi
if grep -E 'GNU_STACK' <<<"$phdrs" | grep -q 'RWE'; then
    echo "nx: no"
else
    echo "nx: yes"
fi
if grep -q '__stack_chk_fail' <<<"$dynsyms"; then
    echo "stack-canary: yes"
else
    echo "stack-canary: no"
fi
for tag in RPATH RUNPATH TEXTREL; do
    name="$(tr '[:upper:]' '[:lower:]' <<<"$tag")"
    if grep -q "($tag)" <<<"$dynamic"; then echo "$name: present"; else echo "$name: none"; fi
done
