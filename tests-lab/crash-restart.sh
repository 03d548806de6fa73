#!/usr/bin/env bash
# kill -9 of the server under perfdhcp load, then restart on the same lease journal:
#  - tcpdump in the client namespace records every reply the clients received (the ACKed set);
#  - after the kill, the journal is exported offline (`xdhcp lease-export`; Kea: its memfile CSV) = before;
#  - the server restarts on the same files and lists its leases on the control socket = after;
#  - tests-lab/lib/crash_judge.py asserts before == after, no address held twice, every journaled ACK back,
#    and that only ACKs sent in the last XD_CRASH_WINDOW seconds before the kill may be missing from the
#    journal (it reports how many were).
# Knobs: XD_SERVER, XD_CRASH_RATE (5000 DORA/s), XD_CRASH_AFTER (8 s of load before the kill),
# XD_CRASH_WINDOW (1.0 s).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/server.sh"

RATE="${XD_CRASH_RATE:-5000}"
KILL_AFTER="${XD_CRASH_AFTER:-8}"
WINDOW="${XD_CRASH_WINDOW:-1.0}"

xd_need perfdhcp tcpdump python3 jq socat
lab_create
lab_standard_topology
srv_write_config "$LAB_DIR/server.json"
srv_start

# Replies only (from the server's relay-link address), headers and DHCP fixed part plus options.
lab_spawn cli tcpdump tcpdump -i xd-c0 -n -s 600 -B 65536 -w "$LAB_DIR/replies.pcap" \
    "udp and src host $LAB_SRV_RELAY_IP and src port 67"
for ((i = 0; i < 100; i++)); do
    grep -q "listening on" "$LAB_DIR/tcpdump.log" && break
    sleep 0.1
done
grep -q "listening on" "$LAB_DIR/tcpdump.log" || xd_die "tcpdump did not start capturing"

xd_log "crash-restart: $XD_SERVER under $RATE DORA/s, kill -9 after $KILL_AFTER s"
lab_spawn cli perfdhcp perfdhcp -4 -l xd-c0 -r "$RATE" -R 1000000 -p $((KILL_AFTER + 10)) "$LAB_SRV_RELAY_IP"
sleep "$KILL_AFTER"
lab_alive perfdhcp || xd_die "perfdhcp stopped before the kill"
kill_ts="$(date +%s.%N)"
lab_signal server KILL
lab_wait_exit server 10 || true
lab_alive server && xd_die "the server survived kill -9"
xd_log "crash-restart: killed $XD_SERVER at $kill_ts"
sleep 1
lab_stop perfdhcp || true
lab_stop tcpdump || true
grep -E "captured|dropped" "$LAB_DIR/tcpdump.log" >&2 || true
if grep -qE "^[1-9][0-9]* packets dropped by kernel" "$LAB_DIR/tcpdump.log"; then
    xd_log "crash-restart: tcpdump dropped packets: the ACK set is a subset (assertions still hold on it)"
fi

srv_export_offline "$LAB_DIR/before.csv"
csv_current_leases "$LAB_DIR/before.csv" "$LAB_DIR/before.txt"
xd_log "crash-restart: offline export of the journal: $(wc -l <"$LAB_DIR/before.txt") leases"

rm -f "$SRV_SOCKET"
srv_start
srv_leases "$LAB_DIR/after.txt"
xd_log "crash-restart: after restart the server lists $(wc -l <"$LAB_DIR/after.txt") leases"

PYTHONPATH="$XD_ROOT/tests-lab/lib" timeout 300 python3 "$XD_ROOT/tests-lab/lib/crash_judge.py" "$LAB_DIR/replies.pcap" \
    "$kill_ts" "$LAB_DIR/before.txt" "$LAB_DIR/after.txt" "$WINDOW" $((RATE * KILL_AFTER / 2)) ||
    xd_die "crash-restart: leases lost or duplicated across kill -9 (see the judge's lines above)"

# The restarted server still serves: a short clean run with new clients.
lab_exec cli 30 perfdhcp -4 -l xd-c0 -r 200 -R 1000 -b mac=00:0c:99:00:00:00 -p 2 -W 1000000 "$LAB_SRV_RELAY_IP" \
    >"$LAB_DIR/after-perf.txt" 2>&1 || { cat "$LAB_DIR/after-perf.txt"; xd_die "the restarted server drops exchanges"; }
lab_stop server || xd_die "$XD_SERVER did not exit cleanly on SIGTERM"
xd_log "crash-restart: PASS"
