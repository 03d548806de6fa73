#!/usr/bin/env bash
# HA interoperability with ISC Kea 2.2 (hot-standby both ways and a load-balancing pair, kill -9 takeover,
# restart and resync): runs scripts/kea-interop, which needs the release xdhcp-control next to XD_BIN.
exec "$(dirname "$0")/../scripts/kea-interop" "$@"
