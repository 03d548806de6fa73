#!/usr/bin/env bash
# The AF_XDP worker's core is the worker's alone: with one worker pinned on one CPU of two, the
# server's other threads (journal writer, reclaim, control socket) run on the other CPU, so the
# worker never waits behind a journal write or fsync. Under `taskset -c 0` (every allowed CPU has a
# worker) they share that CPU, and the server says so. Both times the server answers DORA.
# xdhcp only (Kea has no AF_XDP workers); needs 2 CPUs.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/server.sh"
source "$XD_ROOT/scripts/lib/perfdhcp.sh"
if [[ "$XD_SERVER" != xdhcp ]]; then
    xd_log "housekeeping-cpus: not applicable to XD_SERVER=$XD_SERVER"
    exit 0
fi
(($(nproc) >= 2)) || xd_die "housekeeping-cpus needs at least 2 CPUs (this machine has $(nproc))"
xd_need perfdhcp jq socat

lab_create
lab_standard_topology

# One interface with one rx queue: one AF_XDP worker.
write_config() {
    SRV_CONFIG="$LAB_DIR/one-worker.json"
    SRV_SOCKET="$LAB_DIR/ctrl4.sock"
    cat >"$SRV_CONFIG" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "xd-s0" ] },
    "control-socket": { "socket-type": "unix", "socket-name": "$SRV_SOCKET" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$LAB_DIR/leases4-$1.csv", "lfc-interval": 0 },
    "user-context": { "xdhcp": { "backend": "xdp", "workers": 1 } },
    "valid-lifetime": 7200,
    "subnet4": [ { "id": 1, "subnet": "10.64.0.0/12", "pools": [ { "pool": "$LAB_POOL1_FIRST - $LAB_POOL1_LAST" } ] } ]
} }
EOF
}

# cpus_of PID COMM_REGEX: the Cpus_allowed_list of every thread of PID whose name matches, one per line.
cpus_of() {
    local t
    for t in /proc/"$1"/task/*; do
        grep -qE "$2" "$t/comm" 2>/dev/null || continue
        echo "$(cat "$t/comm"): $(awk '/^Cpus_allowed_list/ {print $2}' "$t/status")"
    done
}

fails=()
# check NAME WANT_WORKER WANT_OTHERS: the worker thread on WANT_WORKER, journal/reclaim/control on WANT_OTHERS.
check() {
    local name="$1" want_worker="$2" want_others="$3" pid line comm cpus seen=0
    pid="$(lab_pid "$name")"
    while read -r line; do
        comm="${line%%:*}"
        cpus="${line##*: }"
        case "$comm" in
            xdhcp-xdp-*) want="$want_worker" ;;
            *) want="$want_others" ;;
        esac
        seen=$((seen + 1))
        if [[ "$cpus" == "$want" ]]; then
            xd_log "housekeeping-cpus [$name]: $comm on CPU(s) $cpus"
        else
            fails+=("$name: thread $comm on CPU(s) $cpus, expected $want")
        fi
    done < <(cpus_of "$pid" '^xdhcp-(xdp-|journal|reclaim|control)')
    ((seen >= 4)) || fails+=("$name: expected a worker, journal, reclaim and control thread, saw $seen: $(cpus_of "$pid" .)")
}

# serve NAME: 2,000 DORA through the worker, all answered.
serve() {
    local report="$LAB_DIR/$1.perfdhcp"
    perfdhcp_run "$report" 4 -r 500 -R 100000 -n 2000 >/dev/null || true
    if perfdhcp_judge "$report" 500 4 >/dev/null 2>&1; then
        xd_log "housekeeping-cpus [$1]: 2,000 DORA answered"
    else
        fails+=("$1: perfdhcp: $(perfdhcp_judge "$report" 500 4 2>&1 | tail -1)")
    fi
}

# 1. Both CPUs allowed: worker on CPU 0, the rest on CPU 1.
write_config free
srv_start free
check free 0 1
grep -q "run on the other CPUs" "$LAB_DIR/free.log" || fails+=("free: no log line naming the housekeeping CPUs")
serve free
lab_stop free || fails+=("free: the server did not exit cleanly")

# 2. Only CPU 0 allowed: everything there, said in the log.
write_config pinned
XD_BIN_REAL="$XD_BIN"
XD_BIN="$LAB_DIR/xdhcp-on-cpu0"
printf '#!/bin/sh\nexec taskset -c 0 "%s" "$@"\n' "$XD_BIN_REAL" >"$XD_BIN"
chmod +x "$XD_BIN"
srv_start pinned
check pinned 0 0
grep -q "every allowed CPU has an AF_XDP worker" "$LAB_DIR/pinned.log" || fails+=("pinned: no log line saying the threads share the worker's CPU")
serve pinned
lab_stop pinned || fails+=("pinned: the server did not exit cleanly")
XD_BIN="$XD_BIN_REAL"

if ((${#fails[@]})); then
    printf 'FAIL: %s\n' "${fails[@]}" >&2
    exit 1
fi
xd_log "housekeeping-cpus: PASS"
