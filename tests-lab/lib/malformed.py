"""Send malformed, truncated and oversized DHCPv4 frames into the lab's client link with an AF_PACKET
socket (standard library only), then check that the server still answers a well-formed DISCOVER.

Usage: malformed.py IFACE send OUT.json [CASE]  -- send every case (or one), write {"kind:case": count_sent}
       malformed.py IFACE list                   -- the names of the DHCP-level cases
       malformed.py IFACE probe SECONDS          -- DISCOVER until an OFFER comes back (exit 0) or time is up

Frames are broadcast from 0.0.0.0:68 to 255.255.255.255:67 like a client without an address. Cases whose
damage is in the IPv4 or UDP header are rejected by the server host's kernel before any UDP socket sees
them; they are sent anyway (a raw or XDP backend sees them) and listed separately from the DHCP-level
cases, which every backend must receive, drop and count.
"""

import json
import os
import random
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
MAGIC = b"\x63\x82\x53\x63"


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(payload, src="0.0.0.0", dst="255.255.255.255", proto=17, total=None, frag=0, ihl=5, bad_csum=False):
    tl = total if total is not None else 20 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tl & 0xFFFF, random.getrandbits(16), frag, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    c = csum(hdr)
    if bad_csum:
        c ^= 0x5A5A
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def udp(payload, sport=68, dport=67, length=None):
    ln = length if length is not None else 8 + len(payload)
    return struct.pack("!HHHH", sport, dport, ln & 0xFFFF, 0) + payload


def eth(mac, l3, ethertype=0x0800):
    return b"\xff" * 6 + mac + struct.pack("!H", ethertype) + l3


def bootp(mac, xid, op=1, hlen=6, cookie=MAGIC, options=b"\x35\x01\x01\xff", flags=0x8000):
    chaddr = (mac + b"\0" * 16)[:16]
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, hlen, 0, xid, 0, flags, b"\0" * 4, b"\0" * 4,
                        b"\0" * 4, b"\0" * 4, chaddr, b"\0" * 64, b"\0" * 128)
    return fixed + cookie + options


def discover(mac, xid):
    return bootp(mac, xid, options=b"\x35\x01\x01" + b"\x37\x03\x01\x03\x33" + b"\xff")


def cases(mac):
    """(name, frame, dhcp_level) for every malformed case."""
    good = discover(mac, 0x11111111)
    out = []
    dhcp = [
        ("dhcp-truncated-fixed-header", good[:100]),
        ("dhcp-truncated-before-cookie", good[:236]),
        ("dhcp-bad-magic-cookie", bootp(mac, 0x2222, cookie=b"\x01\x02\x03\x04")),
        ("dhcp-option-overruns-end", bootp(mac, 0x3333, options=b"\x35\x01\x01\x0c\xf0abc")),
        ("dhcp-no-message-type", bootp(mac, 0x4444, options=b"\x0c\x03abc\xff")),
        ("dhcp-unknown-message-type", bootp(mac, 0x5555, options=b"\x35\x01\x63\xff")),
        ("dhcp-message-type-bad-length", bootp(mac, 0x6666, options=b"\x35\x00\xff")),
        ("dhcp-bootreply-to-server", bootp(mac, 0x7777, op=2)),
        ("dhcp-hlen-too-long", bootp(mac, 0x8888, hlen=200)),
        ("dhcp-hlen-zero", bootp(mac, 0x8889, hlen=0)),
        ("dhcp-options-no-end", bootp(mac, 0x9999, options=b"\x35\x01\x01" + b"\x0c\x05hello")),
        ("dhcp-oversized-3000", bootp(mac, 0xAAAA, options=b"\x35\x01\x01" + b"\x00" * 2750 + b"\xff")),
    ]
    for name, payload in dhcp:
        out.append((name, eth(mac, ipv4(udp(payload))), True))
    frame_level = [
        ("frame-runt-14", eth(mac, b"")),
        ("ip-truncated-header", eth(mac, ipv4(udp(good))[:12])),
        ("ip-total-length-beyond-frame", eth(mac, ipv4(udp(good), total=2000))),
        ("ip-bad-header-checksum", eth(mac, ipv4(udp(good), bad_csum=True))),
        ("ip-first-fragment", eth(mac, ipv4(udp(good), frag=0x2000))),
        ("ip-later-fragment", eth(mac, ipv4(good[:200], frag=0x0010))),
        ("ip-ihl-too-small", eth(mac, ipv4(udp(good), ihl=3))),
        ("udp-length-beyond-ip", eth(mac, ipv4(udp(good, length=1400)))),
        ("udp-length-below-header", eth(mac, ipv4(udp(good, length=4)))),
        ("vlan-tagged-truncated", eth(mac, b"\x00\x05\x08\x00\x45", ethertype=0x8100)),
    ]
    for name, fr in frame_level:
        out.append((name, fr, False))
    # Random damage to a good DISCOVER: truncations and byte flips anywhere in the DHCP payload.
    rnd = random.Random(20240601)
    for i in range(300):
        b = bytearray(good)
        if i % 3 == 0:
            b = b[: rnd.randrange(0, len(b))]
        else:
            for _ in range(rnd.randrange(1, 8)):
                b[rnd.randrange(0, len(b))] = rnd.randrange(256)
        out.append((f"random-{i % 3 and 'flip' or 'cut'}", eth(mac, ipv4(udp(bytes(b)))), None))
    return out


def open_sock(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    return s


def iface_mac(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def send(iface, out_path, only=None):
    s = open_sock(iface)
    mac = iface_mac(iface)
    sent = {}
    for name, frame, dhcp_level in cases(mac):
        if only is not None and name != only:
            continue
        for _ in range(3 if dhcp_level is not None else 1):
            try:
                s.send(frame)
            except OSError as e:
                # e.g. EMSGSIZE for a frame above the link MTU: reported, not counted as sent
                print(f"malformed: {name}: not sent: {e}", file=sys.stderr)
                break
            key = ("dhcp:" if dhcp_level else "frame:" if dhcp_level is False else "random:") + name
            sent[key] = sent.get(key, 0) + 1
        time.sleep(0.001)  # stay below any sane receive queue: this test is about parsing, not load
    with open(out_path, "w") as f:
        json.dump(sent, f, indent=1)
    print(f"malformed: sent {sum(sent.values())} frames in {len(sent)} cases", file=sys.stderr)


def probe(iface, seconds):
    s = open_sock(iface)
    mac = iface_mac(iface)
    deadline = time.time() + seconds
    xid = random.getrandbits(32)
    while time.time() < deadline:
        s.send(eth(mac, ipv4(udp(discover(mac, xid)))))
        until = min(deadline, time.time() + 1.0)
        while time.time() < until:
            r, _, _ = select.select([s], [], [], max(0.0, until - time.time()))
            if not r:
                break
            fr = s.recv(4096)
            if len(fr) < 14 + 20 + 8 + 240 or fr[12:14] != b"\x08\x00":
                continue
            ihl = (fr[14] & 0x0F) * 4
            bp = 14 + ihl + 8
            if struct.unpack("!H", fr[14 + ihl + 2 : 14 + ihl + 4])[0] != 68:
                continue
            if fr[bp] != 2 or struct.unpack("!I", fr[bp + 4 : bp + 8])[0] != xid:
                continue
            yiaddr = socket.inet_ntoa(fr[bp + 16 : bp + 20])
            print(f"malformed: server answered a DISCOVER with an offer of {yiaddr}", file=sys.stderr)
            return 0
    print(f"malformed: no answer to a well-formed DISCOVER within {seconds} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in ("send", "probe", "list"):
        sys.exit(__doc__)
    if sys.argv[2] == "list":
        print("\n".join(n for n, _, d in cases(b"\0" * 6) if d))
    elif sys.argv[2] == "send":
        send(sys.argv[1], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        sys.exit(probe(sys.argv[1], float(sys.argv[3])))
    os._exit(0)
