# shellcheck shell=bash
# The namespace lab: a server namespace and a client namespace joined by veth pairs, created and destroyed
# by the script that sources this file. Everything the lab creates lives inside its own two namespaces
# (the veth pairs are created there, never in the host namespace), so deleting the namespaces removes every
# interface, and no interface the lab did not create is ever touched. Every process started in the lab is
# recorded by pid file and killed on exit, on failure and on INT/TERM; processes still inside the lab's
# namespaces at teardown are ours by construction and are killed too. Every command runs under `timeout`.
#
# Usage (from a script running as root with `set -euo pipefail`):
#   source scripts/lib/lab.sh
#   lab_create                                  # namespaces $LAB_SRV and $LAB_CLI, trap installed
#   lab_link xd-s0 10.64.0.1/12 xd-c0 10.64.0.2/12   # veth pair (LAB_QUEUES queues), addresses optional
#   lab_spawn srv NAME cmd...                   # background process in a namespace, log in $LAB_DIR/NAME.log
#   lab_exec cli SECONDS cmd...                 # foreground command in a namespace, bounded
#   lab_stop NAME                               # SIGTERM, then SIGKILL after LAB_STOP_GRACE_S
# Teardown is automatic (trap on EXIT/INT/TERM); lab_destroy may also be called directly. A run killed
# with SIGKILL cannot clean up: the next lab_create removes namespaces and work dirs whose creating
# script (the pid in their name) is gone.
#
# Environment: LAB_QUEUES (rx/tx queues per veth, 1), LAB_LIFETIME_S (hard limit on any lab process, 1800),
# LAB_STOP_GRACE_S (SIGTERM to SIGKILL, 5), LAB_NICE (nice level of servers and load generators, -10),
# LAB_KEEP_DIR=1 (keep the work dir with logs, configs, pcaps).

if [[ -n "${XD_LAB_SOURCED:-}" ]]; then return 0; fi
XD_LAB_SOURCED=1
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LAB_ID="${LAB_ID:-$$}"
LAB_SRV="xd-srv-${LAB_ID}"
LAB_CLI="xd-cli-${LAB_ID}"
LAB_QUEUES="${LAB_QUEUES:-1}"
# Safety net: a process spawned in the lab dies after this long even if this script is SIGKILLed and its
# trap never runs.
LAB_LIFETIME_S="${LAB_LIFETIME_S:-1800}"
LAB_STOP_GRACE_S="${LAB_STOP_GRACE_S:-5}"
# The server and the load generators run at this nice level, so that unrelated work on a shared machine
# (a compiler, say) does not starve the system under test and turn into drops.
LAB_NICE="${LAB_NICE:--10}"
LAB_DIR=""
LAB_KEEP_DIR="${LAB_KEEP_DIR:-0}"
LAB_CREATED_NS=()
LAB_DESTROYED=0

# The namespace for a role: srv or cli (or a namespace name this lab created).
lab_ns() {
    case "$1" in
        srv) echo "$LAB_SRV" ;;
        cli) echo "$LAB_CLI" ;;
        xd-*) echo "$1" ;;
        *) xd_die "lab: unknown namespace role '$1' (srv or cli)" ;;
    esac
}

# Refuse to operate on a namespace this lab did not create.
lab_owned_ns() {
    local ns="$1" n
    for n in "${LAB_CREATED_NS[@]}"; do [[ "$n" == "$ns" ]] && return 0; done
    xd_die "lab: refusing to touch namespace '$ns': this lab did not create it"
}

# Namespaces named xd-srv-PID / xd-cli-PID whose creating script is dead were left by a SIGKILLed run:
# they are ours (the xd- prefix and pid suffix are this lab's scheme), so remove them.
lab_reap_stale() {
    local ns pid p
    for ns in $(timeout 10 ip netns list 2>/dev/null | awk '{print $1}'); do
        [[ "$ns" =~ ^xd-(srv|cli)-([0-9]+)$ ]] || continue
        pid="${BASH_REMATCH[2]}"
        [[ -d "/proc/$pid" ]] && continue
        xd_log "lab: removing stale namespace $ns (its script, pid $pid, is gone)"
        for p in $(timeout 10 ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        timeout 10 ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    local d
    for d in /tmp/xd-lab-*.??????; do
        [[ -d "$d" && "$d" =~ ^/tmp/xd-lab-([0-9]+)\.[A-Za-z0-9]{6}$ ]] || continue
        [[ -d "/proc/${BASH_REMATCH[1]}" ]] || rm -rf "$d"
    done
}

lab_create() {
    xd_require_root
    xd_need ip timeout pgrep
    lab_reap_stale
    LAB_DIR="$(mktemp -d "/tmp/xd-lab-${LAB_ID}.XXXXXX")"
    mkdir -p "$LAB_DIR/pids"
    trap 'lab_on_exit' EXIT
    trap 'lab_on_signal INT 130' INT
    trap 'lab_on_signal TERM 143' TERM
    local ns
    for ns in "$LAB_SRV" "$LAB_CLI"; do
        if [[ " $(timeout 10 ip netns list | awk '{print $1}' | tr '\n' ' ') " == *" $ns "* ]]; then
            xd_die "lab: namespace $ns already exists; refusing to reuse a namespace this run did not create"
        fi
        timeout 10 ip netns add "$ns"
        LAB_CREATED_NS+=("$ns")
        timeout 10 ip -n "$ns" link set lo up
        # `ip netns exec` bind-mounts /etc/netns/NS/* over /etc: a DHCP client script that writes
        # resolv.conf inside the lab then writes this copy, not the host's.
        mkdir -p "/etc/netns/$ns"
        : >"/etc/netns/$ns/resolv.conf"
    done
    xd_log "lab: namespaces $LAB_SRV and $LAB_CLI, work dir $LAB_DIR"
}

# lab_link SRV_IF SRV_ADDR CLI_IF CLI_ADDR [MTU]: a veth pair with LAB_QUEUES rx/tx queues, one end in each
# namespace. Addresses are CIDR or "-" for none. Interface names must start with "xd".
lab_link() {
    local sif="$1" saddr="$2" cif="$3" caddr="$4" mtu="${5:-1500}"
    [[ "$sif" == xd* && "$cif" == xd* ]] || xd_die "lab: interface names must start with 'xd' (got $sif, $cif)"
    ((${#sif} <= 15 && ${#cif} <= 15)) || xd_die "lab: interface names longer than 15 characters"
    lab_owned_ns "$LAB_SRV"
    lab_owned_ns "$LAB_CLI"
    timeout 10 ip -n "$LAB_SRV" link add "$sif" numtxqueues "$LAB_QUEUES" numrxqueues "$LAB_QUEUES" mtu "$mtu" \
        type veth peer name "$cif" netns "$LAB_CLI" numtxqueues "$LAB_QUEUES" numrxqueues "$LAB_QUEUES" mtu "$mtu"
    if [[ "$saddr" != - ]]; then timeout 10 ip -n "$LAB_SRV" addr add "$saddr" dev "$sif"; fi
    if [[ "$caddr" != - ]]; then timeout 10 ip -n "$LAB_CLI" addr add "$caddr" dev "$cif"; fi
    timeout 10 ip -n "$LAB_SRV" link set "$sif" up
    timeout 10 ip -n "$LAB_CLI" link set "$cif" up
    xd_log "lab: veth $LAB_SRV/$sif ($saddr) <-> $LAB_CLI/$cif ($caddr), $LAB_QUEUES queue(s), mtu $mtu"
}

# lab_exec ROLE SECONDS cmd...: run a command inside a lab namespace, killed after SECONDS.
lab_exec() {
    local ns secs="$2"
    ns="$(lab_ns "$1")"
    shift 2
    lab_owned_ns "$ns"
    timeout --kill-after=5 "$secs" ip netns exec "$ns" "$@"
}

# lab_spawn ROLE NAME cmd...: start a background process inside a namespace. Its stdout and stderr go to
# $LAB_DIR/NAME.log; its pid (the real command, not a wrapper) goes to $LAB_DIR/pids/NAME.pid.
lab_spawn() {
    local ns name="$2" pid
    ns="$(lab_ns "$1")"
    shift 2
    lab_owned_ns "$ns"
    [[ ! -e "$LAB_DIR/pids/$name.pid" ]] || xd_die "lab: a process named $name is already running"
    # timeout puts itself and the command in their own process group, so a Ctrl-C sent to this script's
    # group does not race the orderly teardown; `ip netns exec` execs the command, so the pid is the real one.
    timeout --kill-after=5 "$LAB_LIFETIME_S" ip netns exec "$ns" "$@" >"$LAB_DIR/$name.log" 2>&1 &
    local wrapper=$!
    echo "$wrapper" >"$LAB_DIR/pids/$name.wrapper"
    # timeout forks the command as its child; wait for it to exist so callers can signal the real process.
    local i
    for ((i = 0; i < 100; i++)); do
        pid="$(pgrep -P "$wrapper" 2>/dev/null | head -n1 || true)"
        [[ -n "$pid" ]] && break
        kill -0 "$wrapper" 2>/dev/null || break
        sleep 0.05
    done
    if [[ -z "$pid" ]]; then
        xd_log "lab: $name exited at once; its log:"
        sed 's/^/    /' "$LAB_DIR/$name.log" >&2 || true
        rm -f "$LAB_DIR/pids/$name.wrapper"
        xd_die "lab: could not start $name: $*"
    fi
    echo "$pid" >"$LAB_DIR/pids/$name.pid"
}

lab_pid() { cat "$LAB_DIR/pids/$1.pid" 2>/dev/null || true; }

lab_alive() {
    local pid
    pid="$(lab_pid "$1")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# lab_signal NAME SIGNAL: send a signal to a spawned process (e.g. KILL for a crash test).
lab_signal() {
    local pid
    pid="$(lab_pid "$1")"
    [[ -n "$pid" ]] || xd_die "lab: no process named $1"
    kill "-$2" "$pid"
}

# lab_wait_exit NAME SECONDS: wait until a spawned process has exited; returns its exit status when known.
lab_wait_exit() {
    local name="$1" secs="$2" wrapper i rc=0
    wrapper="$(cat "$LAB_DIR/pids/$name.wrapper" 2>/dev/null || true)"
    for ((i = 0; i < secs * 20; i++)); do
        lab_alive "$name" || break
        sleep 0.05
    done
    lab_alive "$name" && return 124
    if [[ -n "$wrapper" ]]; then wait "$wrapper" 2>/dev/null || rc=$?; fi
    rm -f "$LAB_DIR/pids/$name.pid" "$LAB_DIR/pids/$name.wrapper"
    return "$rc"
}

# lab_stop NAME: SIGTERM, wait LAB_STOP_GRACE_S, then SIGKILL. Returns the process's exit status.
lab_stop() {
    local name="$1" rc=0
    [[ -e "$LAB_DIR/pids/$name.pid" ]] || return 0
    lab_alive "$name" && kill -TERM "$(lab_pid "$name")" 2>/dev/null
    lab_wait_exit "$name" "$LAB_STOP_GRACE_S" || rc=$?
    if ((rc == 124)); then
        xd_log "lab: $name ignored SIGTERM for ${LAB_STOP_GRACE_S}s; killing it"
        kill -KILL "$(lab_pid "$name")" 2>/dev/null || true
        lab_wait_exit "$name" 5 || true
    fi
    return "$rc"
}

lab_destroy() {
    ((LAB_DESTROYED)) && return 0
    LAB_DESTROYED=1
    local f pid ns
    if [[ -n "$LAB_DIR" && -d "$LAB_DIR/pids" ]]; then
        for f in "$LAB_DIR"/pids/*.pid; do
            [[ -e "$f" ]] || continue
            pid="$(cat "$f")"
            kill -TERM "$pid" 2>/dev/null || true
        done
        for f in "$LAB_DIR"/pids/*.pid; do
            [[ -e "$f" ]] || continue
            pid="$(cat "$f")"
            for ((i = 0; i < LAB_STOP_GRACE_S * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    for ns in "${LAB_CREATED_NS[@]}"; do
        # Anything still running inside our namespaces was started by this lab (e.g. a child of a
        # spawned process).
        for pid in $(timeout 10 ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        timeout 10 ip netns del "$ns" 2>/dev/null || xd_log "lab: could not delete namespace $ns"
        rm -rf "/etc/netns/$ns"
    done
    if [[ -n "$LAB_DIR" && -d "$LAB_DIR" ]]; then
        if [[ "$LAB_KEEP_DIR" == 1 ]]; then
            # Renamed so that the next lab's stale-run sweep leaves it alone.
            local kept="${LAB_DIR/xd-lab-/xd-lab-kept-}"
            mv "$LAB_DIR" "$kept" && xd_log "lab: kept work dir $kept"
        else
            rm -rf "$LAB_DIR"
        fi
    fi
}

lab_on_exit() {
    local rc=$?
    if ((rc != 0)) && [[ -n "$LAB_DIR" && -d "$LAB_DIR" ]]; then
        # Show the tail of every log on failure so a CI transcript says what went wrong.
        local f
        for f in "$LAB_DIR"/*.log; do
            [[ -e "$f" ]] || continue
            xd_log "lab: last lines of $(basename "$f"):"
            tail -n 25 "$f" | sed 's/^/    /' >&2 || true
        done
    fi
    lab_destroy
    exit "$rc"
}

lab_on_signal() {
    # A second INT/TERM (Ctrl-C under `timeout` delivers one to both) must not cut the teardown short.
    trap '' INT TERM
    xd_log "lab: interrupted by SIG$1; tearing down"
    trap - EXIT
    lab_destroy
    exit "$2"
}
