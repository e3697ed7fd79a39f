#!/usr/bin/env bash
# The control API against its document: validates api/openapi.json (openapi-spec-validator),
# then fuzzes a real byokd (SoftHSM token, the Azure emulator, mTLS as an admin) with
# Schemathesis, every check on, a bounded number of examples per operation. Any failure, any
# 5xx, any status or body the document does not describe, fails the run.
# Every answer must come within BYOKD_FUZZ_MAX_RESPONSE_S; the long polls (GET /v1/logs,
# GET /v1/jobs/{job}, which wait up to 60 s by design) are fuzzed with wait=1 for that
# (tests/api-fuzz.toml). No route waits for Azure: a cloud action is a job, so no 5xx is allowed.
# The stateful phase is left out: its inferred links feed a null `job_id` into /v1/jobs/{job}.
# Usage: tests/api-fuzz.sh    (python3 with venv; the tools go into a venv under the target dir)
# Knobs: BYOKD_FUZZ_EXAMPLES (default 25), BYOKD_FUZZ_SEED, BYOKD_FUZZ_MAX_RESPONSE_S (default 5),
# BYOKD_FUZZ_PREBUILT=1 (use the binaries `cargo test` just built).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/rig.sh

# Pinned tools, in a venv of their own.
SCHEMATHESIS_VERSION=4.32.5
VALIDATOR_VERSION=0.8.4
venv="${CARGO_TARGET_DIR:-$PWD/target}/api-fuzz-venv"
have_st=$("$venv/bin/schemathesis" --version 2>/dev/null || true)
have_validator=$("$venv/bin/pip" show openapi-spec-validator 2>/dev/null || true)
if [[ "$have_st" != *" $SCHEMATHESIS_VERSION"* || "$have_validator" != *"Version: $VALIDATOR_VERSION"* ]]; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION and openapi-spec-validator $VALIDATOR_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$VALIDATOR_VERSION"
fi

echo "== openapi-spec-validator api/openapi.json"
"$venv/bin/openapi-spec-validator" api/openapi.json

echo "== a real byokd: SoftHSM token, Azure emulator, admin certificates"
rig_init
# After `cargo test --workspace` (tests/install-and-test.sh) the binaries are built already;
# building them again outside the test profile would recompile dependencies for minutes.
if [ -n "${BYOKD_FUZZ_PREBUILT:-}" ] && [ -x "$bin/byokd" ] && [ -x "$bin/byokctl" ] && [ -x "$bin/byokd-emulator" ]; then
    echo "   using the binaries in $bin"
else
    rig_build
fi
rig_softhsm byokd-fuzz
rig_pki admin admin2
rig_emulator byokd-fuzz fuzz-secret-value
# Azure calls to the vaults of fuzzed groups (which do not exist) fail after one attempt.
RIG_AZURE_EXTRA=$'max_attempts = 1\nconnect_timeout_ms = 2000\ntotal_timeout_ms = 4000' \
    rig_config byokd-fuzz byokd-fuzz admin admin2
rig_byokd admin
# Something to find: a credential, a group and a key pushed to the emulator.
(umask 077 && printf 'fuzz-secret-value\n' > "$work/client-secret.txt")
"$bin/byokctl" credential add fuzz-app --tenant-id 11111111-2222-3333-4444-555555555555 \
    --client-id aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee --secret-file "$work/client-secret.txt" >/dev/null
"$bin/byokctl" group create fuzz --credential fuzz-app --vault byokd-fuzz --key-type RSA-2048 >/dev/null
"$bin/byokctl" key create fuzz k1 >/dev/null
"$bin/byokctl" key sync fuzz k1 >/dev/null

examples="${BYOKD_FUZZ_EXAMPLES:-25}"
seed="${BYOKD_FUZZ_SEED:-$RANDOM}"  # CI fixes it (tests/install-and-test.sh); vary it by hand
doc="$PWD/api/openapi.json"
settings="$PWD/tests/api-fuzz.toml"
fuzz() {
    (cd "$work" && "$venv/bin/schemathesis" --config-file "$settings" run "$doc" \
        --url "https://localhost:$port" \
        --tls-verify "$work/ca.pem" \
        --request-cert "$work/admin.pem" --request-cert-key "$work/admin.key" \
        --checks all --phases examples,coverage,fuzzing \
        --max-examples "$examples" --seed "$seed" \
        --workers 1 --request-timeout 90 \
        --generation-database none \
        --no-color --suppress-health-check all \
        "$@")
}
echo "== schemathesis (seed $seed, $examples examples per operation)"
status=0
fuzz --max-response-time "${BYOKD_FUZZ_MAX_RESPONSE_S:-5}" || status=1
if grep -q "panicked" "$work/byokd.log"; then
    echo "byokd panicked during the fuzzing:" >&2
    grep -B2 -A10 "panicked" "$work/byokd.log" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "api fuzzing failed (seed $seed); byokd log: $work/byokd.log" >&2
    exit 1
fi
echo "== api fuzzing passed"
