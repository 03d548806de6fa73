#!/usr/bin/env bash
# `xdhcp check-config`: the five hub-and-spoke seed configs (config/tests/data/hub-and-spoke/) and the
# lab's own config pass; every broken config in tests-lab/data/broken/ fails with exit code != 0 and a line
# "FILE: JSON.path: reason" naming the JSON path given in the file's "// expect:" comment ("-" = only the
# file is required, e.g. a syntax error). xdhcp only: `kea-dhcp4 -t` also requires every interface a
# config names to exist on the host, so it cannot check these files outside their own network.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/server.sh"
if [[ "$XD_SERVER" != xdhcp ]]; then
    xd_log "check-config: not applicable to XD_SERVER=$XD_SERVER (kea-dhcp4 -t needs the configs' interfaces to exist)"
    exit 0
fi

SEEDS="$XD_ROOT/config/tests/data/hub-and-spoke"
BROKEN="$XD_ROOT/tests-lab/data/broken"

[[ -x "$XD_BIN" ]] || xd_die "server binary $XD_BIN not found: build it with 'cargo build --release -p xdhcp-dataplane'"
check() { timeout 30 "$XD_BIN" check-config "$1"; }

fails=()
shopt -s nullglob
seeds=("$SEEDS"/*.json)
((${#seeds[@]} >= 5)) || xd_die "expected the five hub-and-spoke seed configs in $SEEDS, found ${#seeds[@]}"
for f in "${seeds[@]}"; do
    if out="$(check "$f" 2>&1)"; then
        xd_log "check-config: OK   $(basename "$f")"
    else
        printf '%s\n' "$out" | sed 's/^/    /' >&2
        fails+=("seed $(basename "$f") rejected")
    fi
done

# The lab's own config (both links, memfile journal, control socket) must be accepted too.
LAB_DIR="$(mktemp -d /tmp/xd-checkcfg.XXXXXX)"
trap 'rm -rf "$LAB_DIR"' EXIT
srv_write_config "$LAB_DIR/lab.json"
if out="$(check "$LAB_DIR/lab.json" 2>&1)"; then
    xd_log "check-config: OK   the lab config (scripts/lib/server.sh)"
else
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    fails+=("the lab config rejected")
fi

for f in "$BROKEN"/*.json; do
    expect="$(sed -n 's|^// expect: *||p' "$f" | head -n1)"
    [[ -n "$expect" ]] || xd_die "$f has no '// expect: JSON.path' line"
    rc=0
    out="$(check "$f" 2>&1)" || rc=$?
    name="$(basename "$f")"
    if ((rc == 0)); then
        fails+=("$name accepted (exit 0), expected an error at $expect")
        continue
    fi
    if ((rc >= 124)); then
        fails+=("$name: the checker crashed or hung (exit $rc): $out")
        continue
    fi
    if [[ "$expect" == - ]]; then
        grep -qF "$f" <<<"$out" || { fails+=("$name: the error does not name the file: $out"); continue; }
    else
        # FILE: PATH...: a non-empty reason
        line="$(grep -F "$f: $expect" <<<"$out" | head -n1 || true)"
        if [[ -z "$line" ]] || ! [[ "$line" =~ ^.+:\ [^:]+:\ .+[^\ ]$ ]]; then
            fails+=("$name: no '$f: $expect...: reason' line in: $out")
            continue
        fi
    fi
    xd_log "check-config: OK   $name rejected (exit $rc): $(head -n1 <<<"$out")"
done

if ((${#fails[@]})); then
    for f in "${fails[@]}"; do xd_log "check-config: FAIL: $f"; done
    exit 1
fi
xd_log "check-config: PASS"
