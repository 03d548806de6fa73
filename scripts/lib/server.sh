# shellcheck shell=bash
# The DHCPv4 server under test, behind one interface so every lab scenario runs unchanged against xdhcp or
# against ISC Kea 2.2 (the reference the scenarios were first checked with). Choose with XD_SERVER=xdhcp|kea;
# xdhcp is the default. Also the lab's standard topology and its Kea-format Dhcp4 config, written with the
# same JSON for both servers (Kea additionally loads its lease_cmds hook, which xdhcp has built in).
#
# Needs scripts/lib/lab.sh sourced first and lab_create called.

if [[ -n "${XD_SERVER_SOURCED:-}" ]]; then return 0; fi
XD_SERVER_SOURCED=1
# shellcheck source=scripts/lib/lab.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab.sh"

# The one switch between the two servers.
XD_SERVER="${XD_SERVER:-xdhcp}"
XD_BIN="${XD_BIN:-${CARGO_TARGET_DIR:-$XD_ROOT/target}/release/xdhcp}"
XD_KEA_HOOKS="${XD_KEA_HOOKS:-/usr/lib/x86_64-linux-gnu/kea/hooks}"

# The standard lab topology:
#   relay link  xd-s0 10.64.0.1/12 <-> xd-c0 10.64.0.2/12  perfdhcp acts as a relay (giaddr 10.64.0.2;
#                                        and 10.64.0.10/12  a second perfdhcp uses -l 10.64.0.10)
#   client link xd-s1 10.80.0.1/24 <-> xd-c1 (no address)  a real client (dhclient) or raw frames
# Subnet 1 (10.64.0.0/12) has a pool of 1,048,318 addresses so a million distinct perfdhcp clients fit.
LAB_SRV_RELAY_IP=10.64.0.1
LAB_RELAY_IP=10.64.0.2
LAB_RELAY2_IP=10.64.0.10   # a second relay address on xd-c0, for a second perfdhcp running at once
LAB_SRV_CLIENT_IP=10.80.0.1
LAB_POOL1_FIRST=10.64.1.0
LAB_POOL1_LAST=10.79.255.254
LAB_POOL2_FIRST=10.80.0.100
LAB_POOL2_LAST=10.80.0.199

lab_standard_topology() {
    lab_link xd-s0 "$LAB_SRV_RELAY_IP/12" xd-c0 "$LAB_RELAY_IP/12" "${1:-1500}"
    timeout 10 ip -n "$LAB_CLI" addr add "$LAB_RELAY2_IP/12" dev xd-c0
    lab_link xd-s1 "$LAB_SRV_CLIENT_IP/24" xd-c1 - "${1:-1500}"
}

SRV_CONFIG=""
SRV_SOCKET=""
SRV_LEASE_NAME=""

# srv_write_config FILE [VALID RENEW REBIND]: the lab's Dhcp4 config. VALID/RENEW/REBIND apply to the
# real-client subnet (short values let a test watch dhclient renew); the perfdhcp subnet keeps leases
# longer than any test so no lease expires mid-test.
srv_write_config() {
    local out="$1" valid="${2:-600}" renew="${3:-300}" rebind="${4:-500}" hooks=""
    SRV_CONFIG="$out"
    SRV_SOCKET="$LAB_DIR/ctrl4.sock"
    SRV_LEASE_NAME="$LAB_DIR/leases4.csv"
    if [[ "$XD_SERVER" == kea ]]; then
        hooks='"hooks-libraries": [ { "library": "'"$XD_KEA_HOOKS"'/libdhcp_lease_cmds.so" } ],'
    fi
    # xdhcp's own settings live in user-context, which Kea ignores (XD_WORKERS: worker threads/queues).
    local tuning=""
    if [[ -n "${XD_WORKERS:-}" ]]; then
        tuning='"user-context": { "xdhcp": { "workers": '"$XD_WORKERS"' } },'
    fi
    cat >"$out" <<EOF
// xdhcp namespace lab: written by scripts/lib/server.sh for XD_SERVER=$XD_SERVER.
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "xd-s0", "xd-s1" ] },
    "control-socket": { "socket-type": "unix", "socket-name": "$SRV_SOCKET" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$SRV_LEASE_NAME", "lfc-interval": 0 },
    $hooks
    $tuning
    "valid-lifetime": 7200,
    "renew-timer": 3600,
    "rebind-timer": 6000,
    "subnet4": [
        {
            "id": 1,
            "subnet": "10.64.0.0/12",
            "pools": [ { "pool": "$LAB_POOL1_FIRST - $LAB_POOL1_LAST" } ]
        },
        {
            "id": 2,
            "subnet": "10.80.0.0/24",
            "interface": "xd-s1",
            "valid-lifetime": $valid,
            "renew-timer": $renew,
            "rebind-timer": $rebind,
            "pools": [ { "pool": "$LAB_POOL2_FIRST - $LAB_POOL2_LAST" } ],
            "option-data": [ { "name": "routers", "data": "$LAB_SRV_CLIENT_IP" } ]
        }
    ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "stderr" } ], "severity": "WARN" } ]
} }
EOF
}

# srv_start [NAME]: start the server on SRV_CONFIG in the server namespace and wait until its control
# socket answers.
srv_start() {
    local name="${1:-server}"
    case "$XD_SERVER" in
        kea)
            xd_need kea-dhcp4
            # Kea writes its pid and lock files under these directories; keep them inside the lab.
            lab_spawn srv "$name" env KEA_PIDFILE_DIR="$LAB_DIR" KEA_LOCKFILE_DIR="$LAB_DIR" \
                nice -n "$LAB_NICE" kea-dhcp4 -c "$SRV_CONFIG"
            ;;
        xdhcp)
            [[ -x "$XD_BIN" ]] || xd_die "server binary $XD_BIN not found: build it with 'cargo build --release -p xdhcp-dataplane' (or set XD_BIN)"
            # XD_BACKEND=socket|xdp overrides the config's backend (user-context.xdhcp.backend).
            lab_spawn srv "$name" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 nice -n "$LAB_NICE" "$XD_BIN" serve -c "$SRV_CONFIG" \
                ${XD_BACKEND:+--backend "$XD_BACKEND"}
            ;;
        *) xd_die "XD_SERVER must be xdhcp or kea (got '$XD_SERVER')" ;;
    esac
    local i
    for ((i = 0; i < 200; i++)); do
        lab_alive "$name" || xd_die "$XD_SERVER exited during start-up (see $name.log above)"
        if [[ -S "$SRV_SOCKET" ]] && srv_cmd '{"command":"statistic-get-all"}' >/dev/null 2>&1; then
            xd_log "server: $XD_SERVER is up (pid $(lab_pid "$name")), control socket $SRV_SOCKET"
            return 0
        fi
        sleep 0.1
    done
    xd_die "$XD_SERVER did not answer on its control socket $SRV_SOCKET within 20 s"
}

# srv_cmd JSON: send one command on the control socket, print the response as one JSON map (Kea's
# direct socket answers with a map; the HTTP agent wraps it in a list: accept both).
srv_cmd() {
    xd_need socat jq
    local out
    out="$(printf '%s' "$1" | timeout 60 socat -t 30 - "UNIX-CONNECT:$SRV_SOCKET")" || return 1
    [[ -n "$out" ]] || return 1
    printf '%s' "$out" | jq -c 'if type == "array" then .[0] else . end'
}

# srv_leases FILE: the server's current leases via lease4-get-all, one "address hwaddr subnet-id cltt
# valid-lft state" line per lease, sorted.
srv_leases() {
    local resp
    resp="$(srv_cmd '{"command":"lease4-get-all"}')" || xd_die "lease4-get-all: no answer on $SRV_SOCKET"
    local result
    result="$(jq -r '.result' <<<"$resp")"
    # Kea answers result 3 (empty) when there are no leases.
    if [[ "$result" == 3 ]]; then : >"$1"; return 0; fi
    [[ "$result" == 0 ]] || xd_die "lease4-get-all failed: $resp"
    jq -r '.arguments.leases[] | "\(.["ip-address"]) \(.["hw-address"] | ascii_downcase) \(.["subnet-id"]) \(.cltt) \(.["valid-lft"]) \(.state)"' \
        <<<"$resp" | sort >"$1"
}

# srv_stat NAME: the current value of one statistic from statistic-get-all (0 when absent).
srv_stats() { srv_cmd '{"command":"statistic-get-all"}'; }
srv_stat() {
    srv_stats | jq -r --arg n "$1" '(.arguments[$n] // [[0]])[0][0]'
}

# srv_export_offline OUT.csv: the leases the server made durable, read from its files while it is not
# running (after a crash): xdhcp's journal via `xdhcp lease-export`, Kea's memfile CSV as is.
srv_export_offline() {
    case "$XD_SERVER" in
        kea) cp "$SRV_LEASE_NAME" "$1" ;;
        xdhcp)
            timeout 300 "$XD_BIN" lease-export --journal "$SRV_LEASE_NAME.journal" --out "$1" --family 4 ||
                xd_die "xdhcp lease-export of $SRV_LEASE_NAME.journal failed"
            ;;
    esac
}

# csv_current_leases IN.csv OUT [COLUMN...]: Kea memfile CSV (an append log where the last row for an
# address wins and a row with valid_lifetime 0 deletes it) → sorted "address COLUMN..." lines, lower case;
# the columns default to "hwaddr subnet_id" (v4); v6 callers name theirs, e.g. "duid lease_type".
csv_current_leases() {
    local in="$1" out="$2"
    shift 2
    (($#)) || set -- hwaddr subnet_id
    timeout 300 python3 - "$in" "$@" >"$out" <<'PY'
import csv, sys
path, cols = sys.argv[1], sys.argv[2:]
cur = {}
with open(path, newline="") as f:
    rows = csv.reader(f)
    header = next(rows, None)
    if header is None:
        sys.exit(0)
    col = {name: i for i, name in enumerate(header)}
    for need in ["address", "valid_lifetime", *cols]:
        if need not in col:
            sys.exit(f"{path}: no column {need!r} in header {header}")
    for row in rows:
        if len(row) < len(header):
            continue  # a torn last row from a crash
        addr = row[col["address"]]
        if row[col["valid_lifetime"]] == "0":
            cur.pop(addr, None)
        else:
            cur[addr] = tuple(row[col[c]].lower() for c in cols)
for addr in sorted(cur):
    print(addr, *cur[addr])
PY
}
