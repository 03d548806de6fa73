"""Judge a kill -9 / restart of the DHCP server (tests-lab/crash-restart.sh).

Inputs: the client-side capture of the server's replies, the time of the kill, the leases exported offline
from the dead server's files ("before"), the leases the restarted server reports ("after").

What is provable from outside, and asserted:
  1. before == after: every lease that reached the journal is back with the same client, and nothing else
     appears (no traffic reached the server between the kill and the export).
  2. No address is held by two clients; no client holds two addresses in one subnet.
  3. Every ACK the clients received that reached the journal is in "after" with that client (follows
     from 1, checked directly on the ACK set).
  4. An ACK can only be missing from the journal if it was sent in the last WINDOW seconds before the
     kill: a server that answers before its group commit lands may lose the newest ACKs, never old ones.
The count of ACKs that were not yet durable is reported.
"""

import sys
from dhcp_pcap import dhcp_messages


def main():
    pcap, kill_ts, before_path, after_path, window, min_acks = sys.argv[1:7]
    kill_ts, window, min_acks = float(kill_ts), float(window), int(min_acks)
    before = {}
    for line in open(before_path):
        addr, hw, subnet = line.split()[:3]
        before[addr] = (hw, subnet)
    after, clients = {}, {}
    fails = []
    for line in open(after_path):
        addr, hw, subnet, _cltt, _valid, state = line.split()
        if addr in after:
            fails.append(f"address {addr} listed twice after restart ({after[addr][0]}, {hw})")
        after[addr] = (hw, subnet)
        if state == "0":
            if (hw, subnet) in clients:
                fails.append(f"client {hw} holds {clients[(hw, subnet)]} and {addr} in subnet {subnet}")
            clients[(hw, subnet)] = addr

    lost = [a for a in before if a not in after]
    changed = [a for a in before if a in after and after[a][0] != before[a][0]]
    extra = [a for a in after if a not in before]
    if lost:
        fails.append(f"{len(lost)} journaled leases missing after restart, e.g. {lost[:5]}")
    if changed:
        fails.append(f"{len(changed)} leases changed client across restart, e.g. "
                     + ", ".join(f"{a}: {before[a][0]} -> {after[a][0]}" for a in changed[:5]))
    if extra:
        fails.append(f"{len(extra)} leases after restart that the journal export did not have, e.g. {extra[:5]}")

    acks = {}
    n_acks = 0
    for ts, mtype, yiaddr, chaddr, _src in dhcp_messages(pcap):
        if mtype != "ACK":
            continue
        n_acks += 1
        if ts > kill_ts + 0.5:
            fails.append(f"ACK of {yiaddr} captured {ts - kill_ts:.3f} s after the kill")
        # The last ACK per address counts: a client may be ACKed more than once for the same address.
        acks[yiaddr] = (ts, chaddr)
    if n_acks < min_acks:
        fails.append(f"only {n_acks} ACKs captured (< {min_acks}): the load did not run as planned")

    not_durable = []
    for addr, (ts, hw) in acks.items():
        if before.get(addr, (None,))[0] == hw:
            if after.get(addr, (None,))[0] != hw:
                fails.append(f"ACKed and journaled {addr} -> {hw} not back after restart")
            continue
        if addr in before:
            fails.append(f"ACKed {addr} to {hw} but the journal holds it for {before[addr][0]}")
        not_durable.append((kill_ts - ts, addr, hw))
    not_durable.sort()
    old = [x for x in not_durable if x[0] > window]
    if old:
        fails.append(f"{len(old)} ACKs older than {window} s before the kill never reached the journal, e.g. "
                     + ", ".join(f"{a} -> {h} ({age:.3f} s before the kill)" for age, a, h in old[:5]))
    newest = max((ts for ts, _ in acks.values()), default=kill_ts)
    # Times are relative to the moment just before `kill -9` was issued (negative: captured after it,
    # i.e. sent in the few milliseconds the kill took).
    print(f"crash judge: {n_acks} ACKs captured ({len(acks)} addresses), the last at kill{newest - kill_ts:+.3f} s; "
          f"journal export {len(before)} leases, after restart {len(after)}; "
          f"ACKs not yet durable at the kill: {len(not_durable)}"
          + (f" (sent between kill{-not_durable[-1][0]*1000:+.1f} ms and kill{-not_durable[0][0]*1000:+.1f} ms)"
             if not_durable else ""),
          file=sys.stderr)
    if fails:
        for f in fails:
            print("crash judge: FAIL: " + f, file=sys.stderr)
        sys.exit(1)
    print("crash judge: OK", file=sys.stderr)


if __name__ == "__main__":
    main()
