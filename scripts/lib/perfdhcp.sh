# shellcheck shell=bash
# Running perfdhcp (Kea 2.2's, Debian package kea-admin) in the lab's client namespace as a relay, and
# judging its report. perfdhcp -4 bound to an interface sends from that interface's address on port 67 with
# giaddr set, so the server answers unicast to the relay address (see shared/reference/xdp-lab-facts.md).
#
# Quirks of perfdhcp 2.2 the judge allows for, found by running it against Kea 2.2:
#  - without -W it exits the moment the period ends and counts the last in-flight exchanges as drops:
#    runs here always pass an exit-wait time;
#  - RELEASE has no reply (RFC 2131), yet its section counts every release as a drop;
#  - replies to renewals are also counted as "orphans" in the REQUEST-ACK section.
# So drops must be zero in DISCOVER-OFFER, REQUEST-ACK and REQUEST-ACK (renewal); RELEASE is judged on the
# number sent. The rate actually offered is judged too: perfdhcp short of CPU sends fewer packets and still
# reports 0 drops.

if [[ -n "${XD_PERFDHCP_SOURCED:-}" ]]; then return 0; fi
XD_PERFDHCP_SOURCED=1
# shellcheck source=scripts/lib/lab.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab.sh"

# perfdhcp's receive buffer in bytes (tests-lab/lib/rcvbuf-shim.c says why); 0 leaves perfdhcp as it is.
PERFDHCP_RCVBUF="${XD_PERFDHCP_RCVBUF:-16777216}"

# perfdhcp_shim: build the LD_PRELOAD shim that enlarges perfdhcp's socket receive buffer.
perfdhcp_shim() {
    [[ -f "$LAB_DIR/rcvbuf-shim.so" ]] && return 0
    xd_need cc
    timeout 60 cc -O2 -shared -fPIC -o "$LAB_DIR/rcvbuf-shim.so" "$XD_ROOT/tests-lab/lib/rcvbuf-shim.c" -ldl ||
        xd_die "could not build tests-lab/lib/rcvbuf-shim.c (apt-get install build-essential)"
}

# perfdhcp_run REPORT PERIOD_S args...: run perfdhcp for PERIOD_S seconds from the relay link (xd-c0, or
# the -l given in args) to the server's relay-link address; its full report is written to REPORT and
# shown. Returns perfdhcp's exit status (3 means "some exchanges failed", which the judge explains).
perfdhcp_run() {
    local report="$1" period="$2"
    shift 2
    local rc=0 e0 e1
    perfdhcp_cmd "$period" "$@"
    e0="$(udp_rcvbuf_errors cli)"
    xd_log "perfdhcp: ${PERFDHCP_CMD[*]:${#PERFDHCP_PRE[@]}} (receive buffer ${PERFDHCP_RCVBUF} bytes)"
    lab_exec cli $((period + 60)) "${PERFDHCP_CMD[@]}" >"$report" 2>&1 || rc=$?
    e1="$(udp_rcvbuf_errors cli)"
    cat "$report"
    # Replies lost in perfdhcp's own socket (its receive buffer overflowed because it did not read in
    # time) are drops of the load generator, not of the server: say so next to the report.
    echo "client-udp-rcvbuf-errors: $((e1 - e0))" >"$report.diag"
    if ((e1 > e0)); then
        xd_log "perfdhcp: its own UDP socket overflowed $((e1 - e0)) times in the client namespace (UdpRcvbufErrors): replies the server sent were lost inside perfdhcp, which did not keep up"
    fi
    return "$rc"
}

# perfdhcp_spawn NAME PERIOD_S args...: the same command as a background lab process (report in
# $LAB_DIR/NAME.log once lab_wait_exit NAME returns), to run two perfdhcp at once.
perfdhcp_spawn() {
    local name="$1" period="$2"
    shift 2
    perfdhcp_cmd "$period" "$@"
    xd_log "perfdhcp: (background $name) ${PERFDHCP_CMD[*]:${#PERFDHCP_PRE[@]}}"
    lab_spawn cli "$name" "${PERFDHCP_CMD[@]}"
}

# perfdhcp_cmd PERIOD_S args...: PERFDHCP_CMD, the full command line: from the relay link (-l xd-c0 unless
# the args name another local interface or address) to the server's relay-link address, with an
# exit-wait time so replies still in flight at the end are not counted as drops.
perfdhcp_cmd() {
    local period="$1"
    shift
    xd_need perfdhcp
    PERFDHCP_PRE=()
    if [[ "$PERFDHCP_RCVBUF" != 0 ]]; then
        perfdhcp_shim
        PERFDHCP_PRE=(env LD_PRELOAD="$LAB_DIR/rcvbuf-shim.so" XD_RCVBUF_BYTES="$PERFDHCP_RCVBUF")
    fi
    local local_args=(-l xd-c0)
    [[ " $* " == *" -l "* ]] && local_args=()
    # Interim reports every XD_PERFDHCP_REPORT_S seconds show when drops happened (a stall or steady).
    local interim=()
    [[ "${XD_PERFDHCP_REPORT_S:-5}" != 0 ]] && interim=(-t "${XD_PERFDHCP_REPORT_S:-5}")
    PERFDHCP_CMD=("${PERFDHCP_PRE[@]}" nice -n "$LAB_NICE" perfdhcp -4 "${local_args[@]}" -p "$period" -W 2000000
        "${interim[@]}" "$@" "${LAB_SRV_RELAY_IP:-10.64.0.1}")
}

# udp_rcvbuf_errors ROLE: the namespace's UDP RcvbufErrors counter (datagrams dropped on a full socket).
udp_rcvbuf_errors() {
    lab_exec "$1" 5 cat /proc/net/snmp | awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ {print $6; exit}'
}

# perfdhcp_judge REPORT RATE PERIOD_S [RENEW_RATE RELEASE_RATE]: fail with the reason unless the report
# shows zero drops and the requested rates were really offered (at least 97% of rate × period).
perfdhcp_judge() {
    timeout 120 python3 - "$@" <<'PY'
import re, sys
path, rate, period = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
renew = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
release = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
text = open(path, errors="replace").read()
sections = {}
for m in re.finditer(r"\*\*\*Statistics for: (.+?)\*\*\*\n(.*?)(?=\n\*\*\*|\Z)", text, re.S):
    fields = dict(re.findall(r"^([a-z ]+): ([0-9.]+)", m.group(2), re.M))
    sections[m.group(1).strip()] = fields
problems = []
def num(sec, key):
    try:
        return float(sections[sec][key])
    except KeyError:
        problems.append(f"perfdhcp report has no '{key}' in section {sec!r}")
        return 0.0
mal = re.search(r"Malformed packets: (\d+)", text)
if mal and int(mal.group(1)) != 0:
    problems.append(f"perfdhcp received {mal.group(1)} malformed packets")
expect = {"DISCOVER-OFFER": rate, "REQUEST-ACK": rate}
if renew:
    expect["REQUEST-ACK (renewal)"] = renew
for sec, r in expect.items():
    if sec not in sections:
        problems.append(f"section {sec!r} missing from perfdhcp's report")
        continue
    sent, recv, drops = num(sec, "sent packets"), num(sec, "received packets"), num(sec, "drops")
    if drops != 0:
        problems.append(f"{sec}: {drops:.0f} drops of {sent:.0f} sent ({100*drops/max(sent,1):.3f}%)")
    if recv < sent:
        problems.append(f"{sec}: received {recv:.0f} < sent {sent:.0f}")
    # Renewals can only start once leases have been acquired, and a balanced run (f + F = r) renews
    # from a near-empty list: allow them 90%.
    share = 0.90 if "renewal" in sec else 0.97
    want = share * r * period
    if sec != "REQUEST-ACK" and sent < want:
        problems.append(f"{sec}: perfdhcp sent only {sent:.0f} (< {share:.0%} of {r:.0f}/s × {period:.0f} s = {want:.0f}): "
                        "the load generator could not offer the requested rate")
    rej = sections[sec].get("rejected leases", "0")
    if float(rej) != 0:
        problems.append(f"{sec}: {rej} rejected leases")
if release:
    sent = num("RELEASE", "sent packets") if "RELEASE" in sections else 0
    if sent < 0.90 * release * period:
        problems.append(f"RELEASE: sent only {sent:.0f} (< 90% of {release:.0f}/s × {period:.0f} s)")
summary = ", ".join(f"{s}: sent {sections[s].get('sent packets','?')} drops {sections[s].get('drops','?')}"
                    for s in sections if s != "RELEASE")
if problems:
    print("perfdhcp judge: FAIL: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"perfdhcp judge: OK: 0 drops at {rate:.0f}/s for {period:.0f} s ({summary})", file=sys.stderr)
PY
}
