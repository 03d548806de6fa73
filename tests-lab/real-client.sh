#!/usr/bin/env bash
# A real DHCP client (ISC dhclient, Debian's isc-dhcp-client, with Debian's dhclient-script) in the client
# namespace gets an address from the server, configures it on its interface, renews it at T1 (the lab
# gives this subnet T1 = 4 s), and releases it; the server's lease list (lease4-get-all on the control
# socket) is checked after each step (scripts/lib/client.sh).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/client.sh"

VALID=40
T1=4
T2=30

xd_need dhclient jq socat python3
lab_create
lab_standard_topology
srv_write_config "$LAB_DIR/server.json" "$VALID" "$T1" "$T2"
srv_start

xd_log "real-client: dhclient on $CLIENT_IF"
client_start
lab_exec cli 5 ip -4 addr show dev "$CLIENT_IF" >&2
[[ "$CLIENT_VALID" == "$VALID" ]] || xd_die "the server's lease has valid-lft $CLIENT_VALID, want $VALID"
xd_log "real-client: bound $CLIENT_ADDR ($CLIENT_MAC), server lease cltt $CLIENT_CLTT"

client_wait_renew $((T1 + 10))
xd_log "real-client: renewed at T1, server lease cltt $CLIENT_PREV_CLTT -> $CLIENT_CLTT"

client_release
stat_rel="$(srv_stat pkt4-release-received)"
((stat_rel >= 1)) || xd_die "statistic pkt4-release-received is $stat_rel after a RELEASE"
xd_log "real-client: released; the server holds no active lease for $CLIENT_IP"
lab_stop server || xd_die "$XD_SERVER did not exit cleanly on SIGTERM"
xd_log "real-client: PASS (bound, configured, renewed, released)"
