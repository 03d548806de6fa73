#!/usr/bin/env bash
# Dual-stack high availability: two xdhcp servers, each one dataplane serving Dhcp4 and Dhcp6 from one
# config file with HA in both sections, and one xdhcp-control per family (`--family 4`, `--family 6`:
# Kea runs one HA service per daemon), hot-standby, in the namespace lab of scripts/lib/ha.sh. Checks:
#   normal4 / normal6  each family reaches hot-standby on both sides with the partner in touch (the
#                      DHCPv4 control's status-get on "-control", the DHCPv6 one's on "-control6");
#   leases4 / leases6  perfdhcp -4 (relayed) and perfdhcp -6 (-e address-and-prefix) get leases from A;
#   repl4 / repl6      samples of A's v4 leases and of its IA_NA and IA_PD leases are on B;
#   takeover           kill -9 of A (dataplane and both controls): B enters partner-down in both families
#                      and answers new DHCPv4 and DHCPv6 clients alone.
# Environment: XD_BIN / XD_CONTROL_BIN (release binaries), XD_BACKEND (socket|xdp, default socket),
# XD_DS_SAMPLE (20), LAB_KEEP_DIR=1.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/ha.sh"

SAMPLE="${XD_DS_SAMPLE:-20}"
NET6=2001:db8:64
PORT6=$((HA_PORT + 1))
xd_need perfdhcp jq socat shuf
[[ -x "$XD_BIN" && -x "$XD_CONTROL_BIN" ]] ||
    xd_die "need $XD_BIN and $XD_CONTROL_BIN: cargo build --release -p xdhcp-dataplane -p xdhcp-control"
ha_lab_create
ha_ip6_up "$(ha_ns a)" xd-s0 "$NET6::1/64"
ha_ip6_up "$(ha_ns b)" xd-s0 "$NET6::3/64"
ha_ip6_up "$(ha_ns cli)" xd-c0 "$NET6::2/64"

declare -A RES=() NOTE=()
CHECKS=(normal4 normal6 leases4 leases6 repl4 repl6 takeover)
for c in "${CHECKS[@]}"; do RES[$c]=FAIL; NOTE[$c]="not reached"; done

# ha_json PORT ME: one hot-standby relationship, server1 (A) primary, peers on PORT.
ha_json() {
    cat <<EOF
{ "library": "$XD_KEA_HOOKS/libdhcp_ha.so", "parameters": { "high-availability": [ {
    "this-server-name": "$2", "mode": "hot-standby",
    "heartbeat-delay": $HA_HEARTBEAT_MS, "max-response-delay": $HA_MAX_RESPONSE_MS,
    "max-ack-delay": $HA_MAX_ACK_MS, "max-unacked-clients": $HA_MAX_UNACKED,
    "peers": [ { "name": "server1", "url": "http://$HA_IP_A:$1/", "role": "primary" },
               { "name": "server2", "url": "http://$HA_IP_B:$1/", "role": "standby" } ] } ] } }
EOF
}

write_dual() {
    local side="$1" dir="$LAB_DIR/$1" me
    me="$(ha_name "$side")"
    echo xdhcp >"$dir/kind"
    cat >"$dir/config.json" <<EOF
// Dual-stack HA lab ($me): written by tests-lab/ha-dual-stack.sh.
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "xd-s0" ] },
    "control-socket": { "socket-type": "unix", "socket-name": "$dir/ctrl4.sock" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases4.csv", "lfc-interval": 0 },
    "hooks-libraries": [ $(ha_json "$HA_PORT" "$me") ],
    "user-context": { "xdhcp": { "workers": 1, "backend": "${XD_BACKEND:-socket}" } },
    "valid-lifetime": $HA_VALID,
    "subnet4": [ { "id": 1, "subnet": "10.64.0.0/12", "pools": [ { "pool": "$HA_POOL_FIRST - $HA_POOL_LAST" } ] } ]
  },
  "Dhcp6": {
    "interfaces-config": { "interfaces": [ "xd-s0" ] },
    "data-directory": "$dir",
    "hooks-libraries": [ $(ha_json "$PORT6" "$me") ],
    "preferred-lifetime": 3000, "valid-lifetime": 4000,
    "subnet6": [ { "id": 1, "subnet": "$NET6::/64", "interface": "xd-s0",
                   "pools": [ { "pool": "$NET6::/80" } ],
                   "pd-pools": [ { "prefix": "2001:db8:c000::", "prefix-len": 34, "delegated-len": 56 } ] } ]
  } }
EOF
}

start_dual() {
    local side="$1" sock
    sock="$(ha_sock "$side")"
    ha_start "$side"
    lab_spawn "$(ha_ns "$side")" "$side-ctl6" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
        "$XD_CONTROL_BIN" -c "$LAB_DIR/$side/config.json" --family 6
    ha_wait_sock "$side" "$side-ctl6" "$sock-control6"
}

# wait_family FAMILY WANT_A WANT_B SECONDS: both sides' state in that family, partners in touch.
wait_family() {
    local suffix=control t0 sa sb
    [[ "$1" == 6 ]] && suffix=control6
    t0=$(date +%s)
    while (($(date +%s) - t0 < $4)); do
        sa="$(ha_state a "$(ha_sock a)-$suffix")"
        sb="$(ha_state b "$(ha_sock b)-$suffix")"
        HA_LAST="A: $sa, B: $sb"
        [[ "$sa" == "$2 true" && "$sb" == "$3 true" ]] && return 0
        [[ "$2" == any && "$sb" == "$3 "* ]] && return 0
        sleep 0.5
    done
    return 1
}

replies() { awk "/Statistics for: $1/{f=1} f && /received packets/{print \$3; exit}" "$2"; }

T0=$(date +%s)
run() {
    local f t
    for side in a b; do
        ha_clean "$side"
        write_dual "$side"
    done
    start_dual a
    start_dual b
    for f in 4 6; do
        t=$(date +%s)
        if wait_family "$f" hot-standby hot-standby 60; then
            RES[normal$f]=PASS
            NOTE[normal$f]="hot-standby/hot-standby, in touch, after $(($(date +%s) - t)) s"
        else
            NOTE[normal$f]="after 60 s: $HA_LAST"
        fi
    done
    [[ "${RES[normal4]}" == PASS && "${RES[normal6]}" == PASS ]] || return 0

    lab_exec cli 60 perfdhcp -4 -l xd-c0 -r 100 -R 100000 -b mac=00:0c:03:00:00:00 -p 5 -W 1000000 \
        >"$LAB_DIR/perf4.txt" 2>&1 || true
    lab_exec cli 60 perfdhcp -6 -l xd-c0 -e address-and-prefix -r 100 -R 100000 -p 5 -W 2000000 \
        >"$LAB_DIR/perf6.txt" 2>&1 || true
    local acks r6
    acks="$(replies REQUEST-ACK "$LAB_DIR/perf4.txt")"
    r6="$(replies REQUEST-REPLY "$LAB_DIR/perf6.txt")"
    ((${acks:-0} > 0)) && RES[leases4]=PASS
    NOTE[leases4]="perfdhcp -4: ${acks:-0} ACKs"
    ((${r6:-0} > 0)) && RES[leases6]=PASS
    NOTE[leases6]="perfdhcp -6: ${r6:-0} REQUEST-REPLY"
    sleep 2
    if ha_check_sample a b "$SAMPLE"; then RES[repl4]=PASS; fi
    NOTE[repl4]="$HA_SAMPLE of A's v4 leases found on B"
    local ok=1 notes
    sample6 a b IA_NA "$SAMPLE" || ok=0
    notes="$SAMPLE_NOTE"
    sample6 a b IA_PD "$SAMPLE" || ok=0
    notes+="; $SAMPLE_NOTE"
    ((ok)) && RES[repl6]=PASS
    NOTE[repl6]="$notes"

    local kill_ms pd4="" pd6=""
    kill_ms=$(date +%s%3N)
    ha_kill a
    t=$((HA_MAX_RESPONSE_MS / 1000 + 15))
    if wait_family 4 any partner-down "$t"; then pd4=$(($(date +%s%3N) - kill_ms)); fi
    if wait_family 6 any partner-down "$t"; then pd6=$(($(date +%s%3N) - kill_ms)); fi
    lab_exec cli 60 perfdhcp -4 -l xd-c0 -r 50 -R 100000 -b mac=00:0c:04:00:00:00 -p 3 -W 1000000 \
        >"$LAB_DIR/after4.txt" 2>&1 || true
    lab_exec cli 60 perfdhcp -6 -l xd-c0 -e address-and-prefix -r 50 -R 100000 -b duid=0003000100c0e0000000 \
        -p 3 -W 2000000 >"$LAB_DIR/after6.txt" 2>&1 || true
    acks="$(replies REQUEST-ACK "$LAB_DIR/after4.txt")"
    r6="$(replies REQUEST-REPLY "$LAB_DIR/after6.txt")"
    if [[ -n "$pd4" && -n "$pd6" ]] && ((${acks:-0} > 0 && ${r6:-0} > 0)); then RES[takeover]=PASS; fi
    NOTE[takeover]="B in partner-down ${pd4:-never} ms (v4) / ${pd6:-never} ms (v6) after the kill; alone it answered ${acks:-0} DHCPv4 and ${r6:-0} DHCPv6 exchanges"
}
run
ha_stop a
ha_stop b

fails=0
printf '\n%-10s %-6s %s\n' CHECK RESULT DETAIL
for c in "${CHECKS[@]}"; do
    printf '%-10s %-6s %s\n' "$c" "${RES[$c]}" "${NOTE[$c]}"
    [[ "${RES[$c]}" == PASS ]] || fails=$((fails + 1))
done
printf '\nha-dual-stack: %d checks failed, %d s\n' "$fails" $(($(date +%s) - T0))
((fails == 0))
