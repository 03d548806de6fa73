#!/usr/bin/env bash
# Malformed, truncated and oversized frames into the server's client-facing interface (AF_PACKET from the
# client namespace, tests-lab/lib/malformed.py): the server must survive, keep answering a well-formed
# DISCOVER, and count the DHCP-level garbage in its drop statistics (statistic-get-all: pkt4-receive-drop
# and, for xdhcp, xdhcp-drop-<reason>). Each DHCP-level case is sent on its own and the counters read after
# it, so a case the server neither answers nor counts is named.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/server.sh"

PY="$XD_ROOT/tests-lab/lib/malformed.py"
# Cases a server may legitimately accept and answer instead of dropping: RFC 2131 servers commonly
# tolerate a missing end option, and a padded 3000-byte DISCOVER is well-formed (Kea answers it; xdhcp
# drops it as oversized). They must still not crash the server.
MAY_ANSWER=" dhcp-options-no-end dhcp-oversized-3000 "
if [[ "$XD_SERVER" == kea ]]; then
    # Kea 2.2, the reference, answers a DISCOVER whose last option overruns the packet and a BOOTREPLY
    # sent to port 67, and drops a packet shorter than the fixed header without counting it.
    MAY_ANSWER+="dhcp-option-overruns-end dhcp-bootreply-to-server dhcp-truncated-fixed-header "
fi

xd_need python3 jq socat
lab_create
# MTU 3500: room for the oversized case, still under the 3506 that native XDP on veth accepts.
lab_standard_topology 3500
srv_write_config "$LAB_DIR/server.json"
srv_start

lab_exec cli 20 python3 "$PY" xd-c1 probe 10 || xd_die "the server does not answer a well-formed DISCOVER at all"

drops() { srv_stat pkt4-receive-drop; }
answers() { srv_stats | jq '[.arguments | to_entries[] | select(.key == "pkt4-offer-sent" or .key == "pkt4-ack-sent" or .key == "pkt4-nak-sent") | .value[0][0]] | add // 0'; }

srv_stats >"$LAB_DIR/stats-before.json"
failed=()
printf '%-32s %8s %8s %8s\n' case sent dropped answered >&2
for c in $(timeout 30 python3 "$PY" - list); do
    d0="$(drops)"
    a0="$(answers)"
    lab_exec cli 20 python3 "$PY" xd-c1 send "$LAB_DIR/sent-$c.json" "$c" 2>>"$LAB_DIR/send.log"
    n="$(jq '[.[]] | add // 0' "$LAB_DIR/sent-$c.json")"
    sleep 0.3
    d1="$(drops)"
    a1="$(answers)"
    printf '%-32s %8s %8s %8s\n' "$c" "$n" $((d1 - d0)) $((a1 - a0)) >&2
    lab_alive server || xd_die "$XD_SERVER died on case $c"
    if ((n == 0)); then
        failed+=("$c: could not be sent")
    elif ((d1 - d0 < n)) && [[ "$MAY_ANSWER" != *" $c "* ]]; then
        failed+=("$c: sent $n, counted as dropped $((d1 - d0))")
    fi
done

# Frame-level damage and random mutations, in one burst.
lab_exec cli 60 python3 "$PY" xd-c1 send "$LAB_DIR/sent-all.json" 2>>"$LAB_DIR/send.log"
sleep 0.5
lab_alive server || xd_die "$XD_SERVER died on frame-level or randomly damaged frames"
lab_exec cli 20 python3 "$PY" xd-c1 probe 10 || xd_die "the server stopped answering after malformed frames"
srv_stats >"$LAB_DIR/stats-after.json"

xd_log "malformed: drop counters that changed:"
jq -r -n --slurpfile a "$LAB_DIR/stats-before.json" --slurpfile b "$LAB_DIR/stats-after.json" '
    $b[0].arguments | to_entries[] | select(.key | test("drop|parse-failed|unknown")) |
    {k: .key, v: (.value[0][0] - (($a[0].arguments[.key] // [[0]])[0][0]))} | select(.v != 0) |
    "    \(.k): +\(.v)"' >&2

if ((${#failed[@]})); then
    xd_die "malformed: DHCP-level garbage not counted as dropped: ${failed[*]}"
fi
lab_stop server || xd_die "$XD_SERVER did not exit cleanly on SIGTERM"
xd_log "malformed: PASS"
