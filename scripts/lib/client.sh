# shellcheck shell=bash
# A real DHCPv4 client in the lab: ISC dhclient (Debian's isc-dhcp-client) with Debian's dhclient-script
# on xd-c1 in the client namespace, against the server's client link (xd-s1, subnet 10.80.0.0/24).
# Used by scripts/demo and tests-lab/real-client.sh. Every step checks both sides: what the client
# configured (ip -4 addr) and what the server recorded (lease4-get-all on its control socket).
#
# Needs scripts/lib/server.sh sourced, lab_create, lab_standard_topology and srv_start done.

if [[ -n "${XD_CLIENT_SOURCED:-}" ]]; then return 0; fi
XD_CLIENT_SOURCED=1
# shellcheck source=scripts/lib/server.sh
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"

CLIENT_IF=xd-c1
CLIENT_ADDR=""    # CIDR as configured, e.g. 10.80.0.100/24
CLIENT_IP=""      # address only
CLIENT_MAC=""
CLIENT_CLTT=""    # the server's cltt for the client's lease, after the last check
export CLIENT_VALID="" CLIENT_PREV_CLTT=""  # valid-lft of the lease; cltt before the last renewal

# The dhclient command line, sharing one config, lease file and pid file between start and release.
client_cmd() { CLIENT_CMD=(dhclient -v -cf "$LAB_DIR/dhclient.conf" -lf "$LAB_DIR/dhclient.leases" -pf "$LAB_DIR/dhclient.pid"); }

client_addr_now() { lab_exec cli 5 ip -4 -o addr show dev "$CLIENT_IF" | awk '{print $4}'; }

# client_server_lease ADDR: "hwaddr subnet cltt valid state" for ADDR on the server, empty if none.
client_server_lease() {
    srv_leases "$LAB_DIR/client-leases.txt"
    awk -v a="$1" '$1 == a {print $2, $3, $4, $5, $6}' "$LAB_DIR/client-leases.txt"
}

# client_start: dhclient in the foreground (-d) as a lab process; returns once the address is configured
# and the server holds the matching lease.
client_start() {
    xd_need dhclient
    # Ask only for what the lab's config sends; no host-name, so dhclient-script never changes the host's
    # hostname or resolv.conf.
    cat >"$LAB_DIR/dhclient.conf" <<'EOF'
request subnet-mask, broadcast-address, routers, dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time;
EOF
    CLIENT_MAC="$(lab_exec cli 5 cat "/sys/class/net/$CLIENT_IF/address")"
    client_cmd
    lab_spawn cli dhclient "${CLIENT_CMD[@]}" -d "$CLIENT_IF"
    local i
    CLIENT_ADDR=""
    for ((i = 0; i < 150; i++)); do
        CLIENT_ADDR="$(client_addr_now)"
        [[ -n "$CLIENT_ADDR" ]] && break
        lab_alive dhclient || xd_die "dhclient exited before getting an address"
        sleep 0.1
    done
    [[ -n "$CLIENT_ADDR" ]] || xd_die "dhclient got no address within 15 s"
    CLIENT_IP="${CLIENT_ADDR%/*}"
    [[ "$CLIENT_ADDR" == */24 ]] || xd_die "configured $CLIENT_ADDR: expected a /24 (subnet-mask option)"
    timeout 30 python3 - "$CLIENT_IP" "$LAB_POOL2_FIRST" "$LAB_POOL2_LAST" <<'PY' || xd_die "configured $CLIENT_IP, outside the pool $LAB_POOL2_FIRST - $LAB_POOL2_LAST"
import ipaddress, sys
a, lo, hi = (ipaddress.ip_address(x) for x in sys.argv[1:])
sys.exit(not lo <= a <= hi)
PY
    # dhclient-script adds the address first and the route from the routers option just after.
    for ((i = 0; i < 50; i++)); do
        [[ "$(lab_exec cli 5 ip -4 route show dev "$CLIENT_IF")" == *"default via $LAB_SRV_CLIENT_IP "* ]] && break
        sleep 0.1
    done
    [[ "$(lab_exec cli 5 ip -4 route show dev "$CLIENT_IF")" == *"default via $LAB_SRV_CLIENT_IP "* ]] ||
        xd_die "no default route via $LAB_SRV_CLIENT_IP (routers option) on $CLIENT_IF"
    local hw subnet valid state
    read -r hw subnet CLIENT_CLTT valid state < <(client_server_lease "$CLIENT_IP") ||
        xd_die "the server has no lease for $CLIENT_IP after the ACK"
    [[ "$hw" == "$CLIENT_MAC" ]] || xd_die "the server's lease for $CLIENT_IP belongs to $hw, not the client $CLIENT_MAC"
    [[ "$subnet" == 2 && "$state" == 0 ]] || xd_die "the server's lease for $CLIENT_IP: subnet $subnet state $state, want 2 and 0"
    CLIENT_VALID="$valid"
}

# client_wait_renew SECONDS: wait for dhclient's renewal at T1 (a REQUEST unicast to the server and a
# second ACK); the server's cltt must advance and the client keep its address.
client_wait_renew() {
    local secs="$1" before acks i renewed=0
    before="$(grep -c "DHCPACK of $CLIENT_IP" "$LAB_DIR/dhclient.log" || true)"
    for ((i = 0; i < secs * 10; i++)); do
        acks="$(grep -c "DHCPACK of $CLIENT_IP" "$LAB_DIR/dhclient.log" || true)"
        if ((acks > before)); then renewed=1; break; fi
        sleep 0.1
    done
    ((renewed)) || xd_die "dhclient did not renew within $secs s (no further DHCPACK in its log)"
    grep -q "DHCPREQUEST for $CLIENT_IP on $CLIENT_IF to $LAB_SRV_CLIENT_IP port 67" "$LAB_DIR/dhclient.log" ||
        xd_die "the renewal was not a REQUEST unicast to the server (RENEWING state)"
    local hw subnet cltt valid state
    read -r hw subnet cltt valid state < <(client_server_lease "$CLIENT_IP") ||
        xd_die "the server lost the lease for $CLIENT_IP on renewal"
    [[ "$hw" == "$CLIENT_MAC" ]] || xd_die "after renewal, $CLIENT_IP belongs to $hw"
    ((cltt > CLIENT_CLTT)) || xd_die "the server's cltt did not advance on renewal ($CLIENT_CLTT -> $cltt)"
    [[ "$(client_addr_now)" == "$CLIENT_ADDR" ]] || xd_die "the client's address changed on renewal"
    CLIENT_PREV_CLTT="$CLIENT_CLTT"
    CLIENT_CLTT="$cltt"
}

# client_release: dhclient -r sends RELEASE, stops the running dhclient and deconfigures the address;
# the server must no longer hold an active lease for it.
client_release() {
    client_cmd
    lab_exec cli 30 "${CLIENT_CMD[@]}" -r "$CLIENT_IF" >"$LAB_DIR/release.log" 2>&1 ||
        xd_die "dhclient -r failed: $(cat "$LAB_DIR/release.log")"
    grep -q "DHCPRELEASE of $CLIENT_IP" "$LAB_DIR/release.log" || xd_die "dhclient -r sent no DHCPRELEASE"
    lab_wait_exit dhclient 10 || true
    [[ -z "$(client_addr_now)" ]] || xd_die "address still configured after release: $(client_addr_now)"
    local i lease=""
    for ((i = 0; i < 50; i++)); do
        lease="$(client_server_lease "$CLIENT_IP")"
        if [[ -z "$lease" ]] || [[ "$(awk '{print $5}' <<<"$lease")" != 0 ]]; then return 0; fi
        sleep 0.1
    done
    xd_die "the server still holds an active lease for $CLIENT_IP after RELEASE: $lease"
}
