#!/usr/bin/env bash
# DHCPv6 end to end in the namespace lab, against `xdhcp serve` with a Dhcp6-only config:
#  1. A real client (ISC dhclient -6 -N -P, Debian's isc-dhcp-client with its dhclient-script) on xd-c1
#     gets an address (IA_NA) and a delegated prefix (IA_PD) in one exchange, configures the address,
#     renews both at T1 (the lab gives T1 = 4 s), and releases both; the server's leases (lease6-get-all
#     on the control socket) are checked after every step, and the server DUID is kept across a restart.
#  2. perfdhcp -6 on xd-c0 (-e address-and-prefix: IA_NA + IA_PD in every SOLICIT/REQUEST) at a
#     moderate rate: 0 drops, and the server holds one address and one prefix per acknowledged client.
#
# Knobs (environment): XD_V6_RATE (1000 exchanges/s), XD_V6_PERIOD (20 s), XD_V6_CLIENTS (100000),
# XD_BACKEND=socket|xdp, XD_BIN (the xdhcp binary, release build by default).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/server.sh"
source "$XD_ROOT/scripts/lib/perfdhcp.sh"

RATE="${XD_V6_RATE:-1000}"
PERIOD="${XD_V6_PERIOD:-20}"
CLIENTS="${XD_V6_CLIENTS:-100000}"
VALID=40
PREFERRED=30
T1=4
T2=20
CLIENT6_IF=xd-c1

[[ "$XD_SERVER" == xdhcp ]] || xd_die "real-client-v6 runs against xdhcp only (XD_SERVER=$XD_SERVER)"
xd_need dhclient perfdhcp jq socat python3
[[ -x "$XD_BIN" ]] || xd_die "server binary $XD_BIN not found: build it with 'cargo build --release -p xdhcp-dataplane' (or set XD_BIN)"
lab_create
lab_link xd-s0 2001:db8:64::1/64 xd-c0 - 1500
lab_link xd-s1 2001:db8:80::1/64 xd-c1 - 1500

# Wait until duplicate address detection is over on both client interfaces: dhclient -6 and perfdhcp
# bind their link-local addresses, which cannot be used while tentative.
wait_dad() {
    local ns="$1" ifc="$2" i
    for ((i = 0; i < 100; i++)); do
        if lab_exec "$ns" 5 ip -6 addr show dev "$ifc" scope link | grep -q inet6 &&
            ! lab_exec "$ns" 5 ip -6 addr show dev "$ifc" tentative | grep -q inet6; then
            return 0
        fi
        sleep 0.1
    done
    xd_die "no usable IPv6 link-local address on $ifc after 10 s"
}
wait_dad cli xd-c0
wait_dad cli xd-c1
wait_dad srv xd-s0
wait_dad srv xd-s1

SRV_CONFIG="$LAB_DIR/server6.json"
SRV_SOCKET="$LAB_DIR/ctrl6.sock"
cat >"$SRV_CONFIG" <<EOF
// xdhcp namespace lab, DHCPv6: written by tests-lab/real-client-v6.sh.
{ "Dhcp6": {
    "interfaces-config": { "interfaces": [ "xd-s0", "xd-s1" ] },
    "control-socket": { "socket-type": "unix", "socket-name": "$SRV_SOCKET" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$LAB_DIR/leases6.csv", "lfc-interval": 0 },
    "data-directory": "$LAB_DIR",
    "preferred-lifetime": 3000,
    "valid-lifetime": 4000,
    "subnet6": [
        { "id": 1, "subnet": "2001:db8:64::/64", "interface": "xd-s0",
          "pools": [ { "pool": "2001:db8:64::/80" } ],
          "pd-pools": [ { "prefix": "2001:db8:c000::", "prefix-len": 34, "delegated-len": 56 } ] },
        { "id": 2, "subnet": "2001:db8:80::/64", "interface": "xd-s1",
          "preferred-lifetime": $PREFERRED, "valid-lifetime": $VALID,
          "renew-timer": $T1, "rebind-timer": $T2,
          "pools": [ { "pool": "2001:db8:80::100 - 2001:db8:80::1ff" } ],
          "pd-pools": [ { "prefix": "2001:db8:8000::", "prefix-len": 40, "delegated-len": 56 } ] }
    ]
} }
EOF
timeout 30 "$XD_BIN" check-config "$SRV_CONFIG" >&2 || xd_die "xdhcp check-config rejects the lab's Dhcp6 config"
srv_start

# leases6 FILE: "address type prefix-len duid iaid subnet cltt valid state" per lease, sorted.
leases6() {
    local resp result
    resp="$(srv_cmd '{"command":"lease6-get-all"}')" || xd_die "lease6-get-all: no answer on $SRV_SOCKET"
    result="$(jq -r '.result' <<<"$resp")"
    if [[ "$result" == 3 ]]; then : >"$1"; return 0; fi
    [[ "$result" == 0 ]] || xd_die "lease6-get-all failed: $resp"
    jq -r '.arguments.leases[] | "\(.["ip-address"]) \(.type) \(.["prefix-len"] // 128) \(.duid) \(.iaid) \(.["subnet-id"]) \(.cltt) \(.["valid-lft"]) \(.state)"' \
        <<<"$resp" | sort >"$1"
}

# ----------------------------------------------------------------------------------------------------
# 1. dhclient -6: address and delegated prefix, renew, release.
# ----------------------------------------------------------------------------------------------------
: >"$LAB_DIR/dhclient6.conf"
DHC=(dhclient -6 -N -P -v -cf "$LAB_DIR/dhclient6.conf" -lf "$LAB_DIR/dhclient6.leases" -pf "$LAB_DIR/dhclient6.pid")
xd_log "real-client-v6: ${DHC[*]} -d $CLIENT6_IF"
lab_spawn cli dhclient6 "${DHC[@]}" -d "$CLIENT6_IF"

client_addr6() { lab_exec cli 5 ip -6 -o addr show dev "$CLIENT6_IF" scope global | awk '{print $4}'; }
ADDR=""
for ((i = 0; i < 200; i++)); do
    ADDR="$(client_addr6)"
    [[ -n "$ADDR" ]] && break
    lab_alive dhclient6 || xd_die "dhclient -6 exited before getting an address"
    sleep 0.1
done
[[ -n "$ADDR" ]] || xd_die "dhclient -6 configured no address within 20 s"
IP="${ADDR%/*}"
python3 - "$IP" <<'PY' || xd_die "dhclient -6 configured $IP, outside the pool 2001:db8:80::100 - 2001:db8:80::1ff"
import ipaddress, sys
a = ipaddress.ip_address(sys.argv[1])
sys.exit(not ipaddress.ip_address("2001:db8:80::100") <= a <= ipaddress.ip_address("2001:db8:80::1ff"))
PY
for ((i = 0; i < 50; i++)); do grep -q "iaprefix" "$LAB_DIR/dhclient6.leases" 2>/dev/null && break; sleep 0.1; done
PREFIX="$(awk '/iaprefix/ {print $2; exit}' "$LAB_DIR/dhclient6.leases")"
[[ -n "$PREFIX" ]] || xd_die "dhclient -6 recorded no delegated prefix (iaprefix) in its lease file"
xd_log "real-client-v6: bound address $ADDR and delegated prefix $PREFIX"

leases6 "$LAB_DIR/l1.txt"
read -r _ _ _ DUID IAID_NA sub_na CLTT_NA valid_na st_na < <(awk -v a="$IP" '$1 == a && $2 == "IA_NA"' "$LAB_DIR/l1.txt") ||
    xd_die "the server has no IA_NA lease for $IP: $(cat "$LAB_DIR/l1.txt")"
[[ "$sub_na" == 2 && "$valid_na" == "$VALID" && "$st_na" == 0 ]] ||
    xd_die "server lease for $IP: subnet $sub_na valid $valid_na state $st_na, want 2 $VALID 0"
P="${PREFIX%/*}"
read -r _ _ plen duid_pd _ sub_pd CLTT_PD _ st_pd < <(awk -v a="$P" '$1 == a && $2 == "IA_PD"' "$LAB_DIR/l1.txt") ||
    xd_die "the server has no IA_PD lease for $PREFIX: $(cat "$LAB_DIR/l1.txt")"
[[ "$plen" == 56 && "$duid_pd" == "$DUID" && "$sub_pd" == 2 && "$st_pd" == 0 ]] ||
    xd_die "server prefix lease for $PREFIX: len $plen duid $duid_pd subnet $sub_pd state $st_pd"
xd_log "real-client-v6: server holds $IP (iaid $IAID_NA) and $P/56 for DUID $DUID"

# Renewal at T1: both leases' cltt must advance; the client keeps its address.
renewed=0
for ((i = 0; i < (T1 + 15) * 10; i++)); do
    leases6 "$LAB_DIR/l2.txt"
    c_na="$(awk -v a="$IP" '$1 == a && $2 == "IA_NA" {print $7}' "$LAB_DIR/l2.txt")"
    c_pd="$(awk -v a="$P" '$1 == a && $2 == "IA_PD" {print $7}' "$LAB_DIR/l2.txt")"
    if [[ -n "$c_na" && -n "$c_pd" ]] && ((c_na > CLTT_NA && c_pd > CLTT_PD)); then renewed=1; break; fi
    sleep 0.1
done
((renewed)) || xd_die "no renewal within $((T1 + 15)) s: cltt $CLTT_NA/$CLTT_PD -> ${c_na:-none}/${c_pd:-none}"
[[ "$(client_addr6)" == "$ADDR" ]] || xd_die "the client's address changed on renewal"
renews="$(srv_stat pkt6-renew-received)"
((renews >= 1)) || xd_die "statistic pkt6-renew-received is $renews after the renewal"
xd_log "real-client-v6: renewed at T1 (cltt $CLTT_NA -> $c_na), $renews RENEW(s) received"

# Release: dhclient -6 -r sends RELEASE for both IAs and deconfigures the address.
lab_exec cli 30 "${DHC[@]}" -r "$CLIENT6_IF" >"$LAB_DIR/release6.log" 2>&1 ||
    xd_die "dhclient -6 -r failed: $(cat "$LAB_DIR/release6.log")"
lab_wait_exit dhclient6 10 || true
[[ -z "$(client_addr6)" ]] || xd_die "address still configured after release: $(client_addr6)"
released=0
for ((i = 0; i < 50; i++)); do
    leases6 "$LAB_DIR/l3.txt"
    if ! awk '$9 == 0' "$LAB_DIR/l3.txt" | grep -q .; then released=1; break; fi
    sleep 0.1
done
((released)) || xd_die "the server still holds active leases after RELEASE: $(cat "$LAB_DIR/l3.txt")"
rel="$(srv_stat pkt6-release-received)"
((rel >= 1)) || xd_die "statistic pkt6-release-received is $rel after a RELEASE"
xd_log "real-client-v6: released; the server holds no active lease ($rel RELEASE received)"

# The server DUID survives a restart.
SID1="$(cat "$LAB_DIR/xdhcp-dhcp6-serverid")"
lab_stop server || xd_die "xdhcp did not exit cleanly on SIGTERM"
srv_start
SID2="$(cat "$LAB_DIR/xdhcp-dhcp6-serverid")"
[[ -n "$SID1" && "$SID1" == "$SID2" ]] || xd_die "server DUID changed across a restart: $SID1 -> $SID2"
xd_log "real-client-v6: server DUID $SID1 kept across a restart"

# ----------------------------------------------------------------------------------------------------
# 2. perfdhcp -6, address and prefix.
# ----------------------------------------------------------------------------------------------------
pre=()
if [[ "$PERFDHCP_RCVBUF" != 0 ]]; then
    perfdhcp_shim
    pre=(env LD_PRELOAD="$LAB_DIR/rcvbuf-shim.so" XD_RCVBUF_BYTES="$PERFDHCP_RCVBUF")
fi
REPORT="$LAB_DIR/perfdhcp6.txt"
xd_log "perfdhcp: perfdhcp -6 -l xd-c0 -e address-and-prefix -r $RATE -R $CLIENTS -p $PERIOD -W 2000000"
rc=0
lab_exec cli $((PERIOD + 60)) "${pre[@]}" perfdhcp -6 -l xd-c0 -e address-and-prefix -r "$RATE" -R "$CLIENTS" \
    -p "$PERIOD" -W 2000000 >"$REPORT" 2>&1 || rc=$?
cat "$REPORT" >&2
python3 - "$REPORT" "$RATE" "$PERIOD" <<'PY' || xd_die "perfdhcp -6 judge failed (perfdhcp exit status $rc)"
import re, sys
text, rate, period = open(sys.argv[1]).read(), float(sys.argv[2]), float(sys.argv[3])
sections = {}
for m in re.finditer(r"\*\*\*Statistics for: (.+?)\*\*\*\n(.*?)(?=\n\*\*\*|\Z)", text, re.S):
    sections[m.group(1).strip()] = dict(re.findall(r"^([a-z ]+): ([0-9.]+)", m.group(2), re.M))
problems = []
for sec in ("SOLICIT-ADVERTISE", "REQUEST-REPLY"):
    f = sections.get(sec)
    if f is None:
        problems.append(f"section {sec} missing")
        continue
    sent, recv, drops = float(f.get("sent packets", 0)), float(f.get("received packets", 0)), float(f.get("drops", -1))
    if drops != 0:
        problems.append(f"{sec}: {drops:.0f} drops of {sent:.0f}")
    if sec == "SOLICIT-ADVERTISE" and sent < 0.97 * rate * period:
        problems.append(f"{sec}: sent only {sent:.0f} (< 97% of {rate:.0f}/s x {period:.0f} s)")
    if float(f.get("rejected leases", 0)) != 0:
        problems.append(f"{sec}: {f['rejected leases']} rejected leases")
mal = re.search(r"Malformed packets: (\d+)", text)
if mal and int(mal.group(1)):
    problems.append(f"{mal.group(1)} malformed packets")
if problems:
    sys.exit("perfdhcp -6 judge: FAIL: " + "; ".join(problems))
sa, rr = sections["SOLICIT-ADVERTISE"], sections["REQUEST-REPLY"]
print(f"perfdhcp -6 judge: OK: 0 drops at {rate:.0f}/s for {period:.0f} s "
      f"(SOLICIT-ADVERTISE sent {sa['sent packets']}, REQUEST-REPLY sent {rr['sent packets']} received {rr['received packets']})",
      file=sys.stderr)
open(sys.argv[1] + ".replies", "w").write(rr["received packets"])
PY
leases6 "$LAB_DIR/l4.txt"
python3 - "$LAB_DIR/l4.txt" "$(cat "$REPORT.replies")" <<'PY' || xd_die "lease check after perfdhcp -6 failed"
import sys
replies = int(sys.argv[2])
na, pd, seen = {}, {}, set()
for line in open(sys.argv[1]):
    addr, ty, plen, duid, iaid, subnet, cltt, valid, state = line.split()
    if (addr, ty) in seen:
        sys.exit(f"FAIL: {ty} {addr} listed twice")
    seen.add((addr, ty))
    if state != "0" or subnet != "1":
        continue
    d = na if ty == "IA_NA" else pd
    if duid in d:
        sys.exit(f"FAIL: client {duid} holds two {ty} leases: {d[duid]} and {addr}")
    d[duid] = addr
print(f"leases: {len(na)} addresses and {len(pd)} prefixes on the server for {replies} REPLYs", file=sys.stderr)
# perfdhcp -R draws clients at random, so a client may come back: never more leases than REPLYs,
# and every client that holds an address holds a prefix too.
if not 0 < len(na) <= replies or set(na) != set(pd):
    sys.exit(f"FAIL: want one address and one prefix per client, at most one per REPLY ({replies})")
PY
lab_stop server || xd_die "xdhcp did not exit cleanly on SIGTERM"
xd_log "real-client-v6: PASS (dhclient -6 address + prefix bound, renewed, released; DUID kept; perfdhcp -6 0 drops at $RATE/s)"
