#!/usr/bin/env bash
# A real DHCP client (ISC dhclient, Debian's isc-dhcp-client, with Debian's dhclient-script) in the client
# namespace gets an address from the server, configures it on its interface, renews it at T1 (the lab
# gives this subnet T1 = 4 s), and releases it; the server's lease list (lease4-get-all on the control
# socket) is checked after each step.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/server.sh"

VALID=40
T1=4
T2=30

xd_need dhclient jq socat
lab_create
lab_standard_topology
srv_write_config "$LAB_DIR/server.json" "$VALID" "$T1" "$T2"
srv_start

# Only what the lab's config sends; no host-name, so dhclient-script never touches the host's hostname or
# resolv.conf.
cat >"$LAB_DIR/dhclient.conf" <<'EOF'
request subnet-mask, broadcast-address, routers, dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time;
EOF
DHCLIENT=(dhclient -v -cf "$LAB_DIR/dhclient.conf" -lf "$LAB_DIR/dhclient.leases" -pf "$LAB_DIR/dhclient.pid")

client_addr() { lab_exec cli 5 ip -4 -o addr show dev xd-c1 | awk '{print $4}'; }
# server_lease ADDR: "hwaddr subnet cltt valid state" of ADDR on the server, empty if none.
server_lease() { srv_leases "$LAB_DIR/leases.txt"; awk -v a="$1" '$1 == a {print $2, $3, $4, $5, $6}' "$LAB_DIR/leases.txt"; }

mac="$(lab_exec cli 5 cat /sys/class/net/xd-c1/address)"
xd_log "real-client: dhclient on xd-c1 ($mac)"
lab_spawn cli dhclient "${DHCLIENT[@]}" -d xd-c1

# 1. Bound: the address is configured on the interface with the lease's lifetime.
addr=""
for ((i = 0; i < 150; i++)); do
    addr="$(client_addr)"
    [[ -n "$addr" ]] && break
    lab_alive dhclient || xd_die "dhclient exited before getting an address"
    sleep 0.1
done
[[ -n "$addr" ]] || xd_die "dhclient got no address within 15 s"
lab_exec cli 5 ip -4 addr show dev xd-c1 >&2
ip4="${addr%/*}"
[[ "$addr" == */24 ]] || xd_die "configured $addr: expected a /24 (subnet-mask option)"
python3 -c "import ipaddress,sys; a=ipaddress.ip_address('$ip4'); sys.exit(not (ipaddress.ip_address('$LAB_POOL2_FIRST') <= a <= ipaddress.ip_address('$LAB_POOL2_LAST')))" ||
    xd_die "configured $ip4, outside the pool $LAB_POOL2_FIRST - $LAB_POOL2_LAST"
lab_exec cli 5 ip -4 route show dev xd-c1 | grep -q "default via $LAB_SRV_CLIENT_IP" ||
    xd_die "no default route via $LAB_SRV_CLIENT_IP (routers option) on xd-c1"
read -r hw subnet cltt1 valid state < <(server_lease "$ip4") || xd_die "the server has no lease for $ip4 after the ACK"
[[ "$hw" == "$mac" ]] || xd_die "server lease for $ip4 belongs to $hw, not the client $mac"
[[ "$subnet" == 2 && "$valid" == "$VALID" && "$state" == 0 ]] ||
    xd_die "server lease for $ip4: subnet $subnet valid $valid state $state, want 2 $VALID 0"
xd_log "real-client: bound $addr, server lease cltt $cltt1"

# 2. Renewed at T1: dhclient unicasts a REQUEST to the server, the server ACKs with a later cltt, and the
# client keeps its address.
acks_before="$(grep -c "DHCPACK of $ip4" "$LAB_DIR/dhclient.log" || true)"
renewed=0
for ((i = 0; i < (T1 + 10) * 10; i++)); do
    acks="$(grep -c "DHCPACK of $ip4" "$LAB_DIR/dhclient.log" || true)"
    if ((acks > acks_before)); then renewed=1; break; fi
    sleep 0.1
done
((renewed)) || xd_die "dhclient did not renew within T1 + 10 s (no second DHCPACK in its log)"
grep -q "DHCPREQUEST for $ip4 on xd-c1 to $LAB_SRV_CLIENT_IP port 67" "$LAB_DIR/dhclient.log" ||
    xd_die "the renewal was not a REQUEST unicast to the server (RENEWING state)"
read -r hw subnet cltt2 valid state < <(server_lease "$ip4") || xd_die "the server lost the lease for $ip4 on renewal"
[[ "$hw" == "$mac" ]] || xd_die "after renewal, $ip4 belongs to $hw"
((cltt2 > cltt1)) || xd_die "server lease cltt did not advance on renewal ($cltt1 -> $cltt2)"
[[ "$(client_addr)" == "$addr" ]] || xd_die "the client's address changed on renewal: $addr -> $(client_addr)"
xd_log "real-client: renewed, server lease cltt $cltt1 -> $cltt2"

# 3. Released: dhclient -r sends RELEASE and deconfigures; the server drops the lease.
lab_exec cli 30 "${DHCLIENT[@]}" -r xd-c1 >"$LAB_DIR/release.log" 2>&1 || xd_die "dhclient -r failed: $(cat "$LAB_DIR/release.log")"
grep -q "DHCPRELEASE of $ip4" "$LAB_DIR/release.log" || xd_die "dhclient -r sent no DHCPRELEASE"
lab_wait_exit dhclient 10 || true
[[ -z "$(client_addr)" ]] || xd_die "address still configured after release: $(client_addr)"
released=0
for ((i = 0; i < 50; i++)); do
    lease="$(server_lease "$ip4")"
    if [[ -z "$lease" ]] || [[ "$(awk '{print $5}' <<<"$lease")" != 0 ]]; then released=1; break; fi
    sleep 0.1
done
((released)) || xd_die "the server still holds an active lease for $ip4 after RELEASE: $lease"
stat_rel="$(srv_stat pkt4-release-received)"
((stat_rel >= 1)) || xd_die "statistic pkt4-release-received is $stat_rel after a RELEASE"
lab_stop server || xd_die "$XD_SERVER did not exit cleanly on SIGTERM"
xd_log "real-client: PASS (bound, renewed, released)"
