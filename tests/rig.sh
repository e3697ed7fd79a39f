# Shared set-up of the shell-driven runs (tests/demo.sh, tests/api-fuzz.sh): a SoftHSM token,
# a console PKI, the Azure emulator (no network) and byokd with an mTLS control socket, all in
# one throw-away work directory. Source it; call the rig_* functions in order.
# Needs: softhsm2, openssl, python3 (a free port), and the built binaries in $bin.

# rig_init: the work directory ($work) and the clean-up of every process started here.
rig_init() {
    root=$(pwd)
    bin="${CARGO_TARGET_DIR:-$root/target}/debug"
    work=$(mktemp -d /tmp/byokd-rig.XXXXXX)
    pids=()
    trap rig_cleanup EXIT
}

rig_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

# rig_build: byokd, byokctl and the Azure emulator.
rig_build() {
    cargo build -q -p byokd --bin byokd --bin byokctl && cargo build -q -p byokd-emulator --bin byokd-emulator
}

# rig_softhsm LABEL: a fresh SoftHSM token; its PIN in $work/hsm-pin (mode 0600).
rig_softhsm() {
    mkdir -p "$work/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
    export SOFTHSM2_CONF="$work/softhsm2.conf"
    softhsm2-util --init-token --free --label "$1" --so-pin 87654321 --pin 12345678 >/dev/null
    (umask 077 && printf '12345678\n' > "$work/hsm-pin")
}

# rig_pki NAME...: a console CA, a server certificate for localhost, a client certificate per NAME.
rig_pki() {
    (
        cd "$work"
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=byokd rig console CA" 2>/dev/null
        issue() { # name, extension
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
            printf '%s\n' "$2" > "$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
        }
        issue server "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
        for who in "$@"; do issue "$who" "extendedKeyUsage=clientAuth"; done
    )
}

# rig_emulator VAULT SECRET: the emulator with one app (tenant 1111…, client aaaa…) and one vault;
# its address in $emu.
rig_emulator() {
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
secret = "$2"
[[vaults]]
name = "$1"
recovery_level = "Recoverable+Purgeable"
TOML
    "$bin/byokd-emulator" --config "$work/emulator.toml" --ca-out "$work/emulator-ca.pem" --request-log "$work/emulator-requests.jsonl" > "$work/emulator.out" 2> "$work/emulator.log" &
    pids+=($!)
    for _ in $(seq 100); do grep -q "listening on" "$work/emulator.out" 2>/dev/null && break; sleep 0.1; done
    emu=$(grep -o 'listening on [0-9.:]*' "$work/emulator.out" | awk '{print $3}')
}

# rig_config TOKEN VAULT ADMIN...: byokd.toml for the token, the emulator's vault, and ADMINs
# (mapped by CN); the control port in $port. $RIG_AZURE_EXTRA adds lines to [azure].
rig_config() {
    local token=$1 vault=$2
    shift 2
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    (umask 077 && cat > "$work/byokd.toml" <<TOML
state_dir = "$work/state"
designated = true
allow_root = true

[hsm]
module = "${BYOKD_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
token_label = "$token"
pin_file = "$work/hsm-pin"
# SoftHSM's RFC 5649 wrap is non-conforming: a software token needs the host strategy.
allow_host_wrap = true

[hardening]
# A run by an ordinary user may not lock all its memory; the appliance uses "required".
mlock = "best-effort"

[azure]
cloud = "public"
extra_ca = ["$work/emulator-ca.pem"]
kek_size = 2048
${RIG_AZURE_EXTRA:-}

[azure.resolve]
"login.microsoftonline.com" = "$emu"
"$vault.vault.azure.net" = "$emu"

[control]
listen = "127.0.0.1:$port"
server_cert = "$work/server.pem"
server_key = "$work/server.key"
client_ca = "$work/ca.pem"
TOML
    )
    for who in "$@"; do
        printf '\n[[control.identities]]\nname = "%s"\nrole = "admin"\ncn = "%s"\n' "$who" "$who" >> "$work/byokd.toml"
    done
}

# rig_byokd: starts byokd and waits until its control socket answers; byokctl is set up for
# the first client certificate given to rig_pki ($1).
rig_byokd() {
    BYOKD_LOG=info "$bin/byokd" --config "$work/byokd.toml" > "$work/byokd.log" 2>&1 &
    pids+=($!)
    export BYOKCTL_SERVER="https://localhost:$port" BYOKCTL_CA="$work/ca.pem" BYOKCTL_CERT="$work/$1.pem" BYOKCTL_KEY="$work/$1.key"
    for _ in $(seq 150); do "$bin/byokctl" status >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "byokd did not start; its log:" >&2
    cat "$work/byokd.log" >&2
    return 1
}
