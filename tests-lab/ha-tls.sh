#!/usr/bin/env bash
# HA over TLS (Kea 2.2's trust-anchor / cert-file / key-file / require-client-certs), in network
# namespaces (scripts/lib/ha.sh draws the lab). A CA, a certificate per server and a rogue CA are made
# with openssl at run time. Scenarios:
#   xdhcp-xdhcp       two xdhcp in hot-standby; the peer URLs say http:// and TLS is on because the
#                     three files are set (Kea's rule), as in Kea's own TLS example
#   xdhcp-kea         xdhcp primary, kea-dhcp4 2.2 standby (HA dedicated listener with TLS), https:// URLs
#   kea-xdhcp         kea-dhcp4 2.2 primary, xdhcp standby, https:// URLs
# Each side: relationship-level trust-anchor (the CA) and its own certificate and key, require-client-certs
# on (the default), so both directions of every pair authenticate each other. Checks per scenario:
#   normal     both sides reach hot-standby with the partner in touch (heartbeats both ways over TLS)
#   replicate  a sample of the leases perfdhcp got from the primary is found on the standby by lease4-get
# and, on the xdhcp listener (the HA peer URL is also the control API):
#   api        status-get over https with a client certificate from the CA answers result 0
#   refused    no client certificate, a client certificate from the rogue CA, and plain HTTP are refused
#   agent      a Control-agent map (Kea's kea-ctrl-agent.conf keys) in the xdhcp side's config gives
#              xdhcp-control a second API listener with its own TLS (cert-required) and basic auth:
#              certificate + user answers, a wrong password gets 401, no certificate is refused
# Prints a PASS/FAIL table; exits 0 only if every check passed.
#
# Usage: tests-lab/ha-tls.sh [SCENARIO...]   (default: all three)
# Environment: XD_BIN / XD_CONTROL_BIN (release binaries), XD_HA_RATE (perfdhcp DORA/s, 200),
# XD_HA_SAMPLE (30), LAB_KEEP_DIR=1 (keep configs, certificates and logs).
set -euo pipefail
# shellcheck source=scripts/lib/ha.sh
source "$(dirname "$0")/../scripts/lib/ha.sh"

RATE="${XD_HA_RATE:-200}"
SAMPLE="${XD_HA_SAMPLE:-30}"
ALL=(xdhcp-xdhcp xdhcp-kea kea-xdhcp)
if (($#)); then SCEN=("$@"); else SCEN=("${ALL[@]}"); fi

xd_require_root
xd_need openssl curl perfdhcp kea-dhcp4 jq socat shuf
[[ -f "$XD_KEA_HOOKS/libdhcp_ha.so" && -f "$XD_KEA_HOOKS/libdhcp_lease_cmds.so" ]] ||
    xd_die "Kea hooks not found in $XD_KEA_HOOKS (apt-get install kea-dhcp4-server)"
[[ -x "$XD_BIN" && -x "$XD_CONTROL_BIN" ]] ||
    xd_die "need $XD_BIN and $XD_CONTROL_BIN: cargo build --release -p xdhcp-dataplane -p xdhcp-control"
ha_lab_create
PKI="$LAB_DIR/pki"

# make_pki: CA, server1 (10.64.0.1) and server2 (10.64.0.3) certificates for server and client use, and a
# rogue CA with a certificate of its own. EC P-256 keys; v3 extensions as a real CA would set them.
make_pki() {
    mkdir -p "$PKI"
    local o=(timeout 60 openssl)
    for ca in ca rogue; do
        "${o[@]}" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=xdhcp lab $ca" -keyout "$PKI/$ca.key" -out "$PKI/$ca.pem" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    done
    leaf() { # leaf NAME IP CA
        "${o[@]}" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
            -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:%s\n' \
            "$2" >"$PKI/$1.ext"
        "${o[@]}" x509 -req -in "$PKI/$1.csr" -CA "$PKI/$3.pem" -CAkey "$PKI/$3.key" -CAcreateserial \
            -days 2 -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
    }
    leaf server1 "$HA_IP_A" ca
    leaf server2 "$HA_IP_B" ca
    leaf operator 10.64.0.2 ca
    leaf intruder 10.64.0.2 rogue
    "${o[@]}" verify -CAfile "$PKI/ca.pem" "$PKI/server1.pem" "$PKI/server2.pem" >/dev/null ||
        xd_die "openssl made certificates that do not verify"
}

# agent_config SIDE: add a Control-agent map to the side's config (xdhcp-control reads it from the same file):
# an API listener of its own on port $AGENT_PORT with TLS (the side's certificate, client certificates
# required) and a basic-auth user.
AGENT_PORT=8443
agent_config() {
    local side="$1" f="$LAB_DIR/$1/config.json" me
    me="$(ha_name "$side")"
    jq --arg ip "$(ha_ip "$side")" --argjson port "$AGENT_PORT" --arg ca "$PKI/ca.pem" \
        --arg cert "$PKI/$me.pem" --arg key "$PKI/$me.key" '
        .["Control-agent"] = {"http-host": $ip, "http-port": $port, "trust-anchor": $ca, "cert-file": $cert,
            "key-file": $key, "cert-required": true,
            "authentication": {"type": "basic", "realm": "xdhcp-lab", "clients": [{"user": "admin", "password": "s3cret"}]}}' \
        "$f" >"$f.new"
    mv "$f.new" "$f"
}

# check_agent SIDE SC: the Control-agent listener answers with certificate and user, and refuses a wrong
# password (HTTP 401) and a client without certificate.
check_agent() {
    local side="$1" sc="$2" url out code notes=() ok=1
    url="https://$(ha_ip "$side"):$AGENT_PORT/"
    local c=(lab_exec cli 20 curl -sS --max-time 10 --cacert "$PKI/ca.pem" -H 'Content-Type: application/json'
        -d '{"command":"status-get"}')
    out="$("${c[@]}" --cert "$PKI/operator.pem" --key "$PKI/operator.key" -u admin:s3cret "$url" 2>&1)" || true
    if [[ "$(jq -r '.[0].result' <<<"$out" 2>/dev/null)" == 0 ]]; then
        notes+=("certificate+user: result 0")
    else
        ok=0
        notes+=("certificate+user: ${out:0:100}")
    fi
    code="$("${c[@]}" --cert "$PKI/operator.pem" --key "$PKI/operator.key" -u admin:wrong -D "$LAB_DIR/401.hdr" \
        -o /dev/null -w '%{http_code}' "$url" 2>&1)" || true
    if [[ "$code" == 401 ]]; then notes+=("wrong password: 401"); else ok=0; notes+=("wrong password: $code"); fi
    # A 401 must say which scheme it wants (RFC 9110 §11.6.1).
    if grep -qi '^WWW-Authenticate: Basic realm=' "$LAB_DIR/401.hdr" 2>/dev/null; then
        notes+=("401 names Basic")
    else
        ok=0
        notes+=("401 without WWW-Authenticate: Basic")
    fi
    if out="$("${c[@]}" -u admin:s3cret "$url" 2>&1)"; then
        ok=0
        notes+=("no client cert: ANSWERED ${out:0:60}")
    else
        notes+=("no client cert: refused")
    fi
    ((ok)) && RES[$sc.agent]=PASS
    NOTE[$sc.agent]="Control-agent listener :$AGENT_PORT: ${notes[*]}"
}

# tls_config SIDE SCHEME: add TLS to the side's config written by ha_write_config: the CA as trust
# anchor and the side's own certificate at the relationship level; peer URLs with SCHEME (http|https).
tls_config() {
    local side="$1" scheme="$2" f="$LAB_DIR/$1/config.json" me
    me="$(ha_name "$side")"
    grep -v '^//' "$f" | jq --arg ca "$PKI/ca.pem" --arg cert "$PKI/$me.pem" --arg key "$PKI/$me.key" \
        --arg scheme "$scheme" '
        .Dhcp4["hooks-libraries"] |= map(
            if (.library | endswith("libdhcp_ha.so")) then
                .parameters["high-availability"][0] += {"trust-anchor": $ca, "cert-file": $cert, "key-file": $key}
                | .parameters["high-availability"][0].peers |= map(.url |= sub("^https?:"; $scheme + ":"))
            else . end)' >"$f.new"
    mv "$f.new" "$f"
}

# https_cmd SIDE JSON [CURL_ARGS...]: one command to the side's peer URL over https from the client
# namespace (the relay address); prints the body; fails when curl does.
https_cmd() {
    local side="$1" body="$2"
    shift 2
    lab_exec cli 20 curl -sS --max-time 10 --cacert "$PKI/ca.pem" "$@" \
        -H 'Content-Type: application/json' -d "$body" "https://$(ha_ip "$side"):$HA_PORT/"
}

# check_listener SIDE SC: the api and refused checks against an xdhcp side.
check_listener() {
    local side="$1" sc="$2" out ok=1 notes=()
    out="$(https_cmd "$side" '{"command":"status-get"}' --cert "$PKI/operator.pem" --key "$PKI/operator.key" 2>&1)" || true
    if [[ "$(jq -r '.[0].result' <<<"$out" 2>/dev/null)" == 0 ]]; then
        RES[$sc.api]=PASS
        NOTE[$sc.api]="status-get over https with the operator's certificate: result 0"
    else
        NOTE[$sc.api]="status-get over https: ${out:0:160}"
    fi
    if out="$(https_cmd "$side" '{"command":"status-get"}' 2>&1)"; then
        ok=0
        notes+=("no client cert: ANSWERED ${out:0:80}")
    else
        notes+=("no client cert: refused")
    fi
    if out="$(https_cmd "$side" '{"command":"status-get"}' --cert "$PKI/intruder.pem" --key "$PKI/intruder.key" 2>&1)"; then
        ok=0
        notes+=("rogue CA cert: ANSWERED ${out:0:80}")
    else
        notes+=("rogue CA cert: refused")
    fi
    if out="$(lab_exec cli 20 curl -sS --max-time 5 -d '{"command":"status-get"}' "http://$(ha_ip "$side"):$HA_PORT/" 2>&1)" &&
        [[ "$(jq -r '.[0].result' <<<"$out" 2>/dev/null)" == 0 ]]; then
        ok=0
        notes+=("plain HTTP: ANSWERED")
    else
        notes+=("plain HTTP: refused")
    fi
    ((ok)) && RES[$sc.refused]=PASS
    NOTE[$sc.refused]="${notes[*]}"
}

declare -A RES=()
declare -A NOTE=()
CHECKS=(normal replicate api refused agent)

run_scenario() {
    local sc="$1" ka="$2" kb="$3" scheme="$4" c t acks
    for c in "${CHECKS[@]}"; do RES[$sc.$c]=FAIL; NOTE[$sc.$c]="not reached"; done
    xd_log "==== $sc: A=$ka (server1, primary), B=$kb (server2, standby), TLS with $scheme:// URLs"
    ha_stop a
    ha_stop b
    ha_clean a
    ha_clean b
    ha_write_config a "$ka" hot-standby
    ha_write_config b "$kb" hot-standby
    tls_config a "$scheme"
    tls_config b "$scheme"
    local x=""
    [[ "$ka" == xdhcp ]] && x=a
    [[ -z "$x" && "$kb" == xdhcp ]] && x=b
    agent_config "$x"
    ha_start a
    ha_start b

    t=$(date +%s)
    if ha_wait_states hot-standby hot-standby 60; then
        RES[$sc.normal]=PASS
        NOTE[$sc.normal]="hot-standby/hot-standby, in touch both ways after $(($(date +%s) - t)) s"
    else
        NOTE[$sc.normal]="after 60 s: $HA_LAST"
        xd_log "$sc: normal state not reached: $HA_LAST"
    fi

    check_listener "$x" "$sc"
    check_agent "$x" "$sc"
    [[ "${RES[$sc.normal]}" == PASS ]] || return 0

    acks="$(lab_exec cli 40 perfdhcp -4 -l xd-c0 -r "$RATE" -R 1000000 -b mac=00:0c:05:00:00:00 -p 4 -W 1000000 2>&1 |
        awk '/Statistics for: REQUEST-ACK/{f=1} f && /received packets/{print $3; exit}')" || true
    sleep 2
    if ((${acks:-0} > 0)) && ha_check_sample a b "$SAMPLE"; then RES[$sc.replicate]=PASS; fi
    NOTE[$sc.replicate]="${acks:-0} ACKs from the primary; $HA_SAMPLE sampled leases found on the standby by lease4-get"
}

make_pki
T0=$(date +%s)
for sc in "${SCEN[@]}"; do
    case "$sc" in
        xdhcp-xdhcp) run_scenario "$sc" xdhcp xdhcp http ;;
        xdhcp-kea) run_scenario "$sc" xdhcp kea https ;;
        kea-xdhcp) run_scenario "$sc" kea xdhcp https ;;
        *) xd_die "unknown scenario $sc (one of ${ALL[*]})" ;;
    esac
    ha_stop a
    ha_stop b
done

fails=0
printf '\n%-12s %-10s %-5s  %s\n' SCENARIO CHECK RESULT DETAIL
for sc in "${SCEN[@]}"; do
    for c in "${CHECKS[@]}"; do
        printf '%-12s %-10s %-5s  %s\n' "$sc" "$c" "${RES[$sc.$c]}" "${NOTE[$sc.$c]}"
        [[ "${RES[$sc.$c]}" == PASS ]] || fails=$((fails + 1))
    done
done
printf '\nha-tls: %d checks failed, %d s\n' "$fails" $(($(date +%s) - T0))
((fails == 0))
