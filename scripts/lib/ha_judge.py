"""Judge of the HA lab's failover runs (scripts/kea-interop, scripts/failover-lab), from the client-side
capture of the servers' replies (tcpdump on the relay interface).

    ha_judge.py takeover PCAP KILL_TS SURVIVOR_IP MODE [DEAD_BUCKET]
        Prints "takeover_ms=<N> acks_after=<N> acks_before=<N>": the time from the kill to the first ACK the
        survivor sent that the dead server would have sent (hot-standby: any ACK of the survivor; load-
        balancing: an ACK to a client whose RFC 3074 bucket is DEAD_BUCKET, 0 primary / 1 secondary).
        Exit 1 when the survivor sent no such ACK.

    ha_judge.py acks PCAP OUT
        Writes every ACK as "ts address chaddr server_ip" lines (for the duplicate check).

    ha_judge.py replies6 PCAP OUT
        Writes every address and prefix a DHCPv6 Reply granted (valid lifetime > 0) as "ts resource duid
        server_ip" lines: what clients were really told, for the v6 duplicate check.

The RFC 3074 mixing table is read from the workspace's only implementation of the hash
(dataplane/src/engine/lb_hash.rs), so the judge and the servers cannot disagree about a client's bucket.
"""

import ipaddress
import os
import re
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests-lab", "lib"))
from dhcp_pcap import DHCP_MAGIC, frames  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def mix_table():
    src = open(os.path.join(ROOT, "dataplane", "src", "engine", "lb_hash.rs")).read()
    m = re.search(r"const MIX: \[u8; 256\] = \[(.*?)\];", src, re.S)
    table = [int(x) for x in re.findall(r"\d+", m.group(1))] if m else []
    if len(table) != 256:
        sys.exit("ha_judge: could not read the RFC 3074 table from lb_hash.rs")
    return table


def lb_bucket(table, key, servers=2):
    h = len(key) & 0xFF
    for b in reversed(key):
        h = table[h ^ b]
    return h % servers


def replies(path):
    """Yield (ts, msg_type, yiaddr, chaddr_bytes, src_ip, client_id_bytes_or_None)."""
    for ts, fr in frames(path):
        if len(fr) < 14 + 20 or struct.unpack("!H", fr[12:14])[0] != 0x0800:
            continue
        off = 14
        ihl = (fr[off] & 0x0F) * 4
        if fr[off + 9] != 17:
            continue
        src_ip = ".".join(str(b) for b in fr[off + 12 : off + 16])
        bootp = off + ihl + 8
        if len(fr) < bootp + 240 or fr[bootp + 236 : bootp + 240] != DHCP_MAGIC:
            continue
        hlen = min(fr[bootp + 2], 16)
        yiaddr = ".".join(str(b) for b in fr[bootp + 16 : bootp + 20])
        chaddr = bytes(fr[bootp + 28 : bootp + 28 + hlen])
        mtype, cid = None, None
        i = bootp + 240
        while i + 1 < len(fr):
            code = fr[i]
            if code == 255:
                break
            if code == 0:
                i += 1
                continue
            ln = fr[i + 1]
            val = bytes(fr[i + 2 : i + 2 + ln])
            if code == 53 and ln >= 1:
                mtype = val[0]
            elif code == 61 and ln >= 1:
                cid = val
            i += 2 + ln
        if mtype is not None:
            yield ts, mtype, yiaddr, chaddr, src_ip, cid


def takeover(pcap, kill_ts, survivor, mode, dead_bucket):
    table = mix_table() if mode == "load-balancing" else None
    first, after, before = None, 0, 0
    for ts, mtype, _yiaddr, chaddr, src, cid in replies(pcap):
        if mtype != 5 or src != survivor:
            continue
        if ts < kill_ts:
            before += 1
            continue
        if table is not None and lb_bucket(table, cid if cid else chaddr) != dead_bucket:
            continue
        after += 1
        if first is None:
            first = ts
    ms = -1 if first is None else round((first - kill_ts) * 1000)
    print(f"takeover_ms={ms} acks_after={after} acks_before={before}")
    return 0 if first is not None else 1


def _v6_options(buf, off, end):
    """Yield (code, value) of the DHCPv6 options in buf[off:end]."""
    while off + 4 <= end:
        code, ln = struct.unpack("!HH", buf[off : off + 4])
        yield code, buf[off + 4 : min(off + 4 + ln, end)]
        off += 4 + ln


def replies6(pcap, out):
    """Every resource granted by a DHCPv6 Reply (7) to a client (UDP port 546), with the client's DUID."""
    with open(out, "w") as f:
        for ts, fr in frames(pcap):
            if len(fr) < 14 + 40 + 8 + 4 or struct.unpack("!H", fr[12:14])[0] != 0x86DD:
                continue
            ip = 14
            if fr[ip + 6] != 17:  # no extension headers in the lab's replies
                continue
            src = ":".join(fr[ip + 8 + i : ip + 10 + i].hex() for i in range(0, 16, 2))
            udp = ip + 40
            if struct.unpack("!H", fr[udp + 2 : udp + 4])[0] != 546:
                continue
            msg = udp + 8
            if fr[msg] != 7:
                continue
            duid, granted = None, []
            for code, val in _v6_options(fr, msg + 4, len(fr)):
                if code == 1:
                    duid = val.hex(":")
                elif code in (3, 25) and len(val) >= 12:  # IA_NA, IA_PD: iaid, T1, T2, options
                    for sub, sv in _v6_options(val, 12, len(val)):
                        if sub == 5 and len(sv) >= 24 and struct.unpack("!I", sv[20:24])[0] > 0:
                            granted.append(sv[:16])
                        elif sub == 26 and len(sv) >= 25 and struct.unpack("!I", sv[4:8])[0] > 0:
                            granted.append(sv[9:25])
            for a in granted:
                f.write(f"{ts:.6f} {ipaddress.IPv6Address(bytes(a))} {duid} {src}\n")
    return 0


def acks(pcap, out):
    with open(out, "w") as f:
        for ts, mtype, yiaddr, chaddr, src, _cid in replies(pcap):
            if mtype == 5:
                f.write(f"{ts:.6f} {yiaddr} {chaddr.hex(':')} {src}\n")
    return 0


def main():
    if len(sys.argv) >= 6 and sys.argv[1] == "takeover":
        bucket = int(sys.argv[6]) if len(sys.argv) > 6 else 0
        return takeover(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5], bucket)
    if len(sys.argv) == 4 and sys.argv[1] == "acks":
        return acks(sys.argv[2], sys.argv[3])
    if len(sys.argv) == 4 and sys.argv[1] == "replies6":
        return replies6(sys.argv[2], sys.argv[3])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
