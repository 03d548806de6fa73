# shellcheck shell=bash
# The HA lab shared by scripts/kea-interop and scripts/failover-lab: two DHCP servers, each in its own
# network namespace, and a client namespace where the load generator acts as a relay agent.
#
#   client namespace ($LAB_CLI)                         server A ($LAB_SRV)     server B ($HA_NS_B)
#   xd-c0 10.64.0.2/12 (relay, giaddr) ─ xd-cp ┐
#                                   bridge xd-br0 ├─ xd-ca ─────────────── xd-s0 10.64.0.1/12
#                                                 └─ xd-cb ─────────────── xd-s0 10.64.0.3/12
#
# The relay sends to 255.255.255.255 (perfdhcp -l does; xdhcp-loadgen with a broadcast server MAC), so
# both servers see every client packet, as they would behind a real relay configured with both server
# addresses; replies come back unicast to giaddr. The two servers talk HTTP to each other over the same
# bridge, on their own veth addresses (server A http://10.64.0.1:8001/, server B http://10.64.0.3:8001/).
# Server A is always "server1" (primary), server B "server2" (standby, or secondary in load-balancing).
#
# Servers: xdhcp is two processes (`xdhcp serve` dataplane + `xdhcp-control`), Kea 2.2 is kea-dhcp4 with
# libdhcp_ha.so and libdhcp_lease_cmds.so and the HA dedicated HTTP listener (HA multi-threading), so no
# kea-ctrl-agent is needed. Both get the same subnet ids and peer names, as Kea requires.
#
# Needs scripts/lib/lab.sh; call ha_lab_create instead of lab_create.

if [[ -n "${XD_HA_SOURCED:-}" ]]; then return 0; fi
XD_HA_SOURCED=1
# shellcheck source=scripts/lib/lab.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab.sh"

HA_NS_B="xd-srvb-${LAB_ID}"
HA_IP_A="${HA_IP_A:-10.64.0.1}"
HA_IP_B="${HA_IP_B:-10.64.0.3}"
HA_RELAY_IP=10.64.0.2
HA_PORT=8001
HA_POOL_FIRST=10.64.1.0
HA_POOL_LAST=10.79.255.254
# Load-balancing with Kea needs the pool split by hand with HA_<server> classes (Kea has no address
# ownership of its own): server1's clients from the first half, server2's from the second.
HA_LB_POOL1="10.64.1.0 - 10.71.255.255"
HA_LB_POOL2="10.72.0.0 - 10.79.255.254"
HA_VALID="${HA_VALID:-3600}"
# HA timing used by both sides (milliseconds): fast enough for a bounded lab run.
HA_HEARTBEAT_MS="${HA_HEARTBEAT_MS:-1000}"
HA_MAX_RESPONSE_MS="${HA_MAX_RESPONSE_MS:-3000}"
HA_MAX_ACK_MS="${HA_MAX_ACK_MS:-1000}"
# 0: partner-down as soon as communication is interrupted (no wait for unacked clients), so the
# takeover time is heartbeat and response delays only.
HA_MAX_UNACKED="${HA_MAX_UNACKED:-0}"

XD_BIN="${XD_BIN:-${CARGO_TARGET_DIR:-$XD_ROOT/target}/release/xdhcp}"
XD_CONTROL_BIN="${XD_CONTROL_BIN:-$(dirname "$XD_BIN")/xdhcp-control}"
XD_LOADGEN_BIN="${XD_LOADGEN_BIN:-$(dirname "$XD_BIN")/xdhcp-loadgen}"
XD_KEA_HOOKS="${XD_KEA_HOOKS:-/usr/lib/x86_64-linux-gnu/kea/hooks}"

# Namespaces xd-srvb-PID of runs that were SIGKILLed (the lab's own sweep knows only srv/cli).
ha_reap_stale() {
    local ns pid p
    for ns in $(timeout 10 ip netns list 2>/dev/null | awk '{print $1}'); do
        [[ "$ns" =~ ^xd-srvb-([0-9]+)$ ]] || continue
        pid="${BASH_REMATCH[1]}"
        [[ -d "/proc/$pid" ]] && continue
        xd_log "ha lab: removing stale namespace $ns (its script, pid $pid, is gone)"
        for p in $(timeout 10 ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        timeout 10 ip netns del "$ns" 2>/dev/null || true
    done
}

# ha_ns a|b|cli: the namespace of a side.
ha_ns() {
    case "$1" in
        a) echo "$LAB_SRV" ;;
        b) echo "$HA_NS_B" ;;
        cli) echo "$LAB_CLI" ;;
        *) xd_die "ha lab: unknown side '$1'" ;;
    esac
}
ha_ip() { if [[ "$1" == a ]]; then echo "$HA_IP_A"; else echo "$HA_IP_B"; fi; }
ha_name() { if [[ "$1" == a ]]; then echo server1; else echo server2; fi; }

ha_lab_create() {
    ha_reap_stale
    lab_create
    local c="$LAB_CLI"
    if timeout 10 ip netns list | awk '{print $1}' | grep -qx "$HA_NS_B"; then
        xd_die "ha lab: namespace $HA_NS_B already exists"
    fi
    timeout 10 ip netns add "$HA_NS_B"
    LAB_CREATED_NS+=("$HA_NS_B")
    timeout 10 ip -n "$HA_NS_B" link set lo up
    timeout 10 ip -n "$c" link add xd-br0 type bridge stp_state 0 forward_delay 0
    timeout 10 ip -n "$c" link add xd-c0 type veth peer name xd-cp
    timeout 10 ip -n "$c" link set xd-cp master xd-br0
    timeout 10 ip -n "$c" addr add "$HA_RELAY_IP/12" dev xd-c0
    local side ns
    for side in a b; do
        ns="$(ha_ns "$side")"
        timeout 10 ip -n "$ns" link add xd-s0 type veth peer name "xd-c$side" netns "$c"
        timeout 10 ip -n "$ns" addr add "$(ha_ip "$side")/12" dev xd-s0
        timeout 10 ip -n "$ns" link set xd-s0 up
        timeout 10 ip -n "$c" link set "xd-c$side" master xd-br0
        timeout 10 ip -n "$c" link set "xd-c$side" up
    done
    timeout 10 ip -n "$c" link set xd-br0 up
    timeout 10 ip -n "$c" link set xd-cp up
    timeout 10 ip -n "$c" link set xd-c0 up
    mkdir -p "$LAB_DIR/a" "$LAB_DIR/b"
    # With STP off the bridge forwards at once (no ping on this machine to check with).
    xd_log "ha lab: relay $HA_RELAY_IP, server A $HA_IP_A ($LAB_SRV), server B $HA_IP_B ($HA_NS_B)"
}

# ha_peer_link: the other way to build the lab, for scripts/bench (which made its own namespaces with
# lab_create and lab_link, the load reaching server A only): server B's namespace and a peer link of its
# own between A's namespace (xd-s9, HA_IP_A) and B (xd-s0, HA_IP_B). Set HA_IP_A/HA_IP_B to addresses off
# the DHCP link before sourcing this file. Idempotent.
ha_peer_link() {
    [[ " ${LAB_CREATED_NS[*]} " == *" $HA_NS_B "* ]] && return 0
    ha_reap_stale
    timeout 10 ip netns add "$HA_NS_B"
    LAB_CREATED_NS+=("$HA_NS_B")
    timeout 10 ip -n "$HA_NS_B" link set lo up
    timeout 10 ip -n "$LAB_SRV" link add xd-s9 type veth peer name xd-s0 netns "$HA_NS_B"
    timeout 10 ip -n "$LAB_SRV" addr add "$HA_IP_A/24" dev xd-s9
    timeout 10 ip -n "$HA_NS_B" addr add "$HA_IP_B/24" dev xd-s0
    timeout 10 ip -n "$LAB_SRV" link set xd-s9 up
    timeout 10 ip -n "$HA_NS_B" link set xd-s0 up
    mkdir -p "$LAB_DIR/a" "$LAB_DIR/b"
    xd_log "ha lab: peer link $LAB_SRV/xd-s9 $HA_IP_A <-> $HA_NS_B/xd-s0 $HA_IP_B"
}

# ha_clean SIDE: remove a side's lease files and sockets (a fresh server).
ha_clean() { rm -rf "${LAB_DIR:?}/$1" && mkdir -p "$LAB_DIR/$1"; }

ha_sock() { echo "$LAB_DIR/$1/ctrl4.sock"; }
# The socket that answers HA status: Kea's own socket, xdhcp-control's admin socket.
ha_status_sock() {
    if [[ "$(cat "$LAB_DIR/$1/kind")" == kea ]]; then ha_sock "$1"; else echo "$(ha_sock "$1")-control"; fi
}

# ha_write_config SIDE KIND MODE: the Dhcp4 config of one side. KIND xdhcp|kea; MODE hot-standby or
# load-balancing. Writes $LAB_DIR/SIDE/config.json and remembers the kind.
ha_write_config() {
    local side="$1" kind="$2" mode="$3" dir="$LAB_DIR/$1"
    local me other role2 pools hooks tuning mt
    me="$(ha_name "$side")"
    echo "$kind" >"$dir/kind"
    if [[ "$mode" == load-balancing ]]; then role2=secondary; else role2=standby; fi
    local ha='{ "this-server-name": "'"$me"'", "mode": "'"$mode"'",
              "heartbeat-delay": '"$HA_HEARTBEAT_MS"', "max-response-delay": '"$HA_MAX_RESPONSE_MS"',
              "max-ack-delay": '"$HA_MAX_ACK_MS"', "max-unacked-clients": '"$HA_MAX_UNACKED"',
              "sync-timeout": 20000, "sync-page-limit": 2000,
              "multi-threading": { "enable-multi-threading": true, "http-dedicated-listener": true,
                                   "http-listener-threads": 2, "http-client-threads": 2 },
              "peers": [
                { "name": "server1", "url": "http://'"$HA_IP_A:$HA_PORT"'/", "role": "primary", "auto-failover": true },
                { "name": "server2", "url": "http://'"$HA_IP_B:$HA_PORT"'/", "role": "'"$role2"'", "auto-failover": true } ] }'
    hooks='"hooks-libraries": [
        { "library": "'"$XD_KEA_HOOKS"'/libdhcp_lease_cmds.so" },
        { "library": "'"$XD_KEA_HOOKS"'/libdhcp_ha.so", "parameters": { "high-availability": [ '"$ha"' ] } } ],'
    tuning=""
    mt=""
    if [[ "$kind" == kea ]]; then
        # HA's dedicated listener needs the DHCP core multi-threaded too.
        mt='"multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 256 },'
        if [[ "$mode" == load-balancing ]]; then
            pools='{ "pool": "'"$HA_LB_POOL1"'", "client-class": "HA_server1" },
                   { "pool": "'"$HA_LB_POOL2"'", "client-class": "HA_server2" }'
        else
            pools='{ "pool": "'"$HA_POOL_FIRST - $HA_POOL_LAST"'" }'
        fi
    else
        # XD_REPLICATION: asynchronous (xdhcp's default) or synchronous (Kea's: the reply waits
        # for the partner's ack; scripts/kea-interop uses it with a Kea partner).
        tuning='"user-context": { "xdhcp": { "workers": '"${XD_WORKERS:-1}"', "backend": "'"${XD_BACKEND:-socket}"'", "replication": "'"${XD_REPLICATION:-asynchronous}"'" } },'
        if [[ "$mode" == load-balancing ]]; then
            # xdhcp owns half of the free addresses by itself; it serves only from server1's half-range
            # so that it never competes with Kea's server2 range.
            pools='{ "pool": "'"$HA_LB_POOL1"'" }'
        else
            pools='{ "pool": "'"$HA_POOL_FIRST - $HA_POOL_LAST"'" }'
        fi
    fi
    cat >"$dir/config.json" <<EOF
// HA lab ($kind, $me, $mode): written by scripts/lib/ha.sh.
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "xd-s0" ] },
    "control-socket": { "socket-type": "unix", "socket-name": "$dir/ctrl4.sock" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases4.csv", "lfc-interval": 0 },
    $hooks
    $mt
    $tuning
    "valid-lifetime": $HA_VALID,
    "renew-timer": $((HA_VALID / 2)),
    "rebind-timer": $((HA_VALID * 7 / 8)),
    "subnet4": [ { "id": 1, "subnet": "10.64.0.0/12", "pools": [ $pools ] } ],
    "loggers": [
        { "name": "kea-dhcp4", "output_options": [ { "output": "stdout" } ], "severity": "WARN" },
        { "name": "kea-dhcp4.ha-hooks", "output_options": [ { "output": "stdout" } ], "severity": "INFO" }
    ]
} }
EOF
}

# ha_start SIDE: start the side's server(s) on its config; waits until the control socket(s) answer.
# HA_PIN_A / HA_PIN_B: a CPU list to pin the side's processes to (taskset), default unpinned.
ha_start() {
    local side="$1" dir="$LAB_DIR/$1" kind ns pinvar pin=()
    kind="$(cat "$dir/kind")"
    ns="$(ha_ns "$side")"
    pinvar="HA_PIN_${side^^}"
    if [[ -n "${!pinvar:-}" ]]; then pin=(taskset -c "${!pinvar}"); fi
    rm -f "$dir/ctrl4.sock" "$dir/ctrl4.sock-control"
    case "$kind" in
        kea)
            xd_need kea-dhcp4
            lab_spawn "$ns" "$side-kea" env KEA_PIDFILE_DIR="$dir" KEA_LOCKFILE_DIR="$dir" \
                "${pin[@]}" kea-dhcp4 -c "$dir/config.json"
            ha_wait_sock "$side" "$side-kea" "$(ha_sock "$side")"
            ;;
        xdhcp)
            [[ -x "$XD_BIN" ]] || xd_die "$XD_BIN not found: cargo build --release -p xdhcp-dataplane (or set XD_BIN)"
            [[ -x "$XD_CONTROL_BIN" ]] || xd_die "$XD_CONTROL_BIN not found: cargo build --release -p xdhcp-control (or set XD_CONTROL_BIN)"
            lab_spawn "$ns" "$side-dp" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "${pin[@]}" "$XD_BIN" serve -c "$dir/config.json"
            ha_wait_sock "$side" "$side-dp" "$(ha_sock "$side")"
            lab_spawn "$ns" "$side-ctl" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "${pin[@]}" "$XD_CONTROL_BIN" -c "$dir/config.json"
            ha_wait_sock "$side" "$side-ctl" "$(ha_sock "$side")-control"
            ;;
    esac
}

ha_wait_sock() {
    local side="$1" name="$2" sock="$3" i
    for ((i = 0; i < 200; i++)); do
        lab_alive "$name" || xd_die "$name exited during start-up (see $name.log)"
        if [[ -S "$sock" ]] && ha_cmd_sock "$sock" '{"command":"status-get"}' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    xd_die "$name did not answer on $sock within 20 s"
}

# ha_kill SIDE: kill -9 every process of the side (a crash: no clean-up runs).
ha_kill() {
    local side="$1" n
    for n in "$side-kea" "$side-dp" "$side-ctl" "$side-ctl6"; do
        if lab_alive "$n"; then lab_signal "$n" KILL; fi
    done
    for n in "$side-kea" "$side-dp" "$side-ctl" "$side-ctl6"; do
        [[ -e "$LAB_DIR/pids/$n.pid" ]] && { lab_wait_exit "$n" 10 || true; }
    done
    return 0
}

# ha_stop SIDE: orderly stop (SIGTERM).
ha_stop() {
    local n
    for n in "$1-ctl6" "$1-ctl" "$1-dp" "$1-kea"; do lab_stop "$n" || true; done
}

# ha_ip6_up NS IFACE ADDR/LEN: a global IPv6 address without DAD, then wait for the link-local one
# (kea-dhcp6 and perfdhcp bind it, which fails while it is tentative).
ha_ip6_up() {
    local ns="$1" ifc="$2" addr="$3" i
    timeout 10 ip -n "$ns" addr add "$addr" dev "$ifc" nodad
    for ((i = 0; i < 100; i++)); do
        if timeout 5 ip -n "$ns" -6 addr show dev "$ifc" scope link | grep -q inet6 &&
            ! timeout 5 ip -n "$ns" -6 addr show dev "$ifc" tentative | grep -q inet6; then
            return 0
        fi
        sleep 0.1
    done
    xd_die "$ns/$ifc: IPv6 link-local address still tentative after 10 s"
}

# leases6 SIDE TYPE OUT [SOCK]: "address duid" of the side's assigned leases of TYPE (lease6-get-all).
leases6() {
    local r res
    r="$(ha_cmd_sock "${4:-$(ha_sock "$1")}" '{"command":"lease6-get-all"}')" || xd_die "lease6-get-all on $1: no answer"
    res="$(jq -r .result <<<"$r")"
    if [[ "$res" == 3 ]]; then : >"$3"; return 0; fi
    [[ "$res" == 0 ]] || xd_die "lease6-get-all on $1: $(head -c 300 <<<"$r")"
    jq -r --arg t "$2" '.arguments.leases[] | select(.state == 0 and .type == $t) | "\(.["ip-address"]) \(.duid | ascii_downcase)"' \
        <<<"$r" | sort >"$3"
}

# sample6 FROM TO TYPE N: N random leases of TYPE held by FROM must be on TO (lease6-get by address and
# type) with the same DUID. Sets SAMPLE_NOTE; returns 1 when any is missing or FROM holds none.
sample6() {
    local from="$1" to="$2" type="$3" n="$4" total miss=0 checked=0 addr duid r got
    leases6 "$from" "$type" "$LAB_DIR/s6-$from-$type.txt"
    total=$(wc -l <"$LAB_DIR/s6-$from-$type.txt")
    SAMPLE_NOTE="$from holds no $type lease"
    ((total > 0)) || return 1
    while read -r addr duid; do
        checked=$((checked + 1))
        r="$(ha_cmd "$to" '{"command":"lease6-get","arguments":{"ip-address":"'"$addr"'","type":"'"$type"'"}}')" ||
            { miss=$((miss + 1)); continue; }
        got="$(jq -r 'if .result == 0 then .arguments.duid | ascii_downcase else "none (result \(.result))" end' <<<"$r")"
        if [[ "$got" != "$duid" ]]; then
            miss=$((miss + 1))
            ((miss <= 3)) && xd_log "sample: $type $addr ($duid) of $from: on $to it is '$got'"
        fi
    done < <(shuf -n "$n" --random-source=<(yes) "$LAB_DIR/s6-$from-$type.txt")
    SAMPLE_NOTE="$((checked - miss))/$checked sampled of $total $type leases of $from found on $to"
    xd_log "sample: $SAMPLE_NOTE"
    ((miss == 0))
}

# ha_cmd_sock SOCK JSON: one command on a UNIX control socket; prints the answer as one map.
ha_cmd_sock() {
    local out
    out="$(printf '%s' "$2" | timeout 30 socat -t 20 - "UNIX-CONNECT:$1")" || return 1
    [[ -n "$out" ]] || return 1
    printf '%s' "$out" | jq -c 'if type == "array" then .[0] else . end'
}
ha_cmd() { ha_cmd_sock "$(ha_sock "$1")" "$2"; }

# ha_state SIDE [SOCK]: "state in-touch" from the side's status-get (Kea's shape, for both kinds), or from
# the status-get of SOCK.
ha_state() {
    local r
    r="$(ha_cmd_sock "${2:-$(ha_status_sock "$1")}" '{"command":"status-get"}' 2>/dev/null)" || { echo "down -"; return 0; }
    jq -r '.arguments["high-availability"][0]["ha-servers"] | "\(.local.state // "?") \(if .remote == null then "?" else .remote["in-touch"] end)"' \
        <<<"$r" 2>/dev/null || echo "? ?"
}

# ha_wait_states WANT_A WANT_B SECONDS: wait until A's and B's local states are those and each has its
# partner in touch; returns 1 on time-out (the last states are in HA_LAST).
HA_LAST=""
ha_wait_states() {
    local wa="$1" wb="$2" secs="$3" t0 sa sb
    t0=$(date +%s)
    while (($(date +%s) - t0 < secs)); do
        sa="$(ha_state a)"
        sb="$(ha_state b)"
        HA_LAST="A: $sa, B: $sb"
        if [[ "$sa" == "$wa true" && "$sb" == "$wb true" ]]; then return 0; fi
        sleep 0.5
    done
    return 1
}

# ha_wait_state SIDE WANT SECONDS: one side's local state (partner in touch or not).
ha_wait_state() {
    local side="$1" want="$2" secs="$3" t0 s
    t0=$(date +%s)
    while (($(date +%s) - t0 < secs)); do
        s="$(ha_state "$side")"
        HA_LAST="$side: $s"
        [[ "${s%% *}" == "$want" ]] && return 0
        sleep 0.2
    done
    return 1
}

# ha_leases SIDE OUT: "address hwaddr" of the side's leases (lease4-get-all on its own socket).
ha_leases() {
    local r res
    r="$(ha_cmd "$1" '{"command":"lease4-get-all","arguments":{"subnets":[1]}}')" || xd_die "lease4-get-all on $1: no answer"
    res="$(jq -r .result <<<"$r")"
    if [[ "$res" == 3 ]]; then : >"$2"; return 0; fi
    [[ "$res" == 0 ]] || xd_die "lease4-get-all on $1: $r"
    jq -r '.arguments.leases[] | select(.state == 0) | "\(.["ip-address"]) \(.["hw-address"] | ascii_downcase)"' <<<"$r" | sort >"$2"
}

# ha_check_sample FROM TO N [EXCLUDE_FILE]: N addresses leased by FROM (random sample) must be found on TO
# by lease4-get with the same hardware address; addresses listed in EXCLUDE_FILE are not sampled. Prints a
# summary; returns 1 when any is missing.
ha_check_sample() {
    local from="$1" to="$2" n="$3" exclude="${4:-/dev/null}" total miss=0 checked=0 addr hw r got
    ha_leases "$from" "$LAB_DIR/sample-$from.all"
    awk -v ex="$exclude" 'FILENAME == ex {x[$1] = 1; next} !($1 in x)' "$exclude" "$LAB_DIR/sample-$from.all" \
        >"$LAB_DIR/sample-$from.txt"
    HA_SAMPLE="0/0"
    total=$(wc -l <"$LAB_DIR/sample-$from.txt")
    if ((total == 0)); then
        xd_log "sample: $from holds no leases"
        return 1
    fi
    while read -r addr hw; do
        checked=$((checked + 1))
        r="$(ha_cmd "$to" '{"command":"lease4-get","arguments":{"ip-address":"'"$addr"'"}}')" || { miss=$((miss + 1)); continue; }
        got="$(jq -r 'if .result == 0 then .arguments["hw-address"] | ascii_downcase else "none" end' <<<"$r")"
        if [[ "$got" != "$hw" ]]; then
            miss=$((miss + 1))
            ((miss <= 3)) && xd_log "sample: $addr ($hw) on $from: on $to it is '$got'"
        fi
    done < <(shuf -n "$n" --random-source=<(yes) "$LAB_DIR/sample-$from.txt")
    xd_log "sample: $checked of $total leases of $from looked up on $to: $((checked - miss)) found, $miss missing"
    HA_SAMPLE="$((checked - miss))/$checked"
    ((miss == 0))
}
