#!/usr/bin/env bash
# Two xdhcp servers in hot-standby under xdhcp-loadgen load, kill -9 of the primary: takeover time, zero
# duplicate addresses, zero lost acknowledged leases (scripts/failover-lab; needs the release
# xdhcp-control and xdhcp-loadgen next to XD_BIN).
exec "$(dirname "$0")/../scripts/failover-lab" "$@"
