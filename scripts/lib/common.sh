# shellcheck shell=bash
# Common helpers for xdhcp's scripts: logging, failing loudly, checking that the tools a script needs are
# installed (naming the Debian package to install), and locating the repository. Sourced, never executed.

if [[ -n "${XD_COMMON_SOURCED:-}" ]]; then return 0; fi
XD_COMMON_SOURCED=1

XD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export XD_ROOT

xd_ts() { date +%H:%M:%S; }
xd_log() { printf '[%s] %s\n' "$(xd_ts)" "$*" >&2; }
xd_die() { printf '[%s] FAIL: %s\n' "$(xd_ts)" "$*" >&2; exit 1; }

# Which Debian package provides each tool the scripts use, so a missing tool names what to install.
declare -A XD_PKG_OF=(
    [ip]=iproute2 [tc]=iproute2 [ethtool]=ethtool [tcpdump]=tcpdump [jq]=jq [socat]=socat
    [perfdhcp]=kea-admin [kea-dhcp4]=kea-dhcp4-server [kea-dhcp6]=kea-dhcp6-server
    [dhclient]=isc-dhcp-client [python3]=python3 [timeout]=coreutils [pgrep]=procps [pkill]=procps
    [clang]=clang [cc]=build-essential [cargo]="rustup (run ./scripts/setup)" [curl]=curl [setsid]=util-linux
)

# xd_need TOOL...: fail unless every tool is on PATH, naming the package that provides it.
xd_need() {
    local t missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t (apt-get install ${XD_PKG_OF[$t]:-$t})")
    done
    if ((${#missing[@]})); then
        xd_die "missing tools: ${missing[*]} — or run ./scripts/setup as root"
    fi
}

xd_require_root() {
    if [[ "$(id -u)" != 0 ]]; then
        xd_die "$(basename "$0") must run as root: it creates network namespaces and veth pairs (try: sudo $0)"
    fi
}

# Cargo may live in ~/.cargo/bin on a machine set up by scripts/setup where the login shell has not
# re-read its profile yet.
xd_cargo_path() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
}
