"""Read DHCPv4 replies out of a pcap file (the classic format tcpdump -w writes) with the standard library
only: no tshark or scapy on the lab machines. Used by the lab scenarios to learn what the server really
told its clients."""

import struct
import sys

DHCP_MAGIC = b"\x63\x82\x53\x63"
MSG_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}


def frames(path):
    """Yield (timestamp_s, frame_bytes) for every record of an Ethernet pcap file."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = head[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            endian = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            endian = ">"
        else:
            raise ValueError(f"{path}: not a pcap file (magic {magic.hex()}); pcapng is not supported")
        nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        if linktype != 1:
            raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return  # a capture cut short ends with a partial record
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield sec + frac / (1e9 if nanos else 1e6), data


def dhcp_messages(path):
    """Yield (ts, msg_type_name, yiaddr, chaddr, src_ip) for every IPv4/UDP DHCP message in the capture."""
    for ts, fr in frames(path):
        off = 14
        ethertype = struct.unpack("!H", fr[12:14])[0] if len(fr) >= 14 else 0
        if ethertype == 0x8100 and len(fr) >= 18:
            ethertype = struct.unpack("!H", fr[16:18])[0]
            off = 18
        if ethertype != 0x0800 or len(fr) < off + 20:
            continue
        ihl = (fr[off] & 0x0F) * 4
        if fr[off + 9] != 17:
            continue
        src_ip = ".".join(str(b) for b in fr[off + 12 : off + 16])
        udp = off + ihl
        bootp = udp + 8
        if len(fr) < bootp + 240 or fr[bootp + 236 : bootp + 240] != DHCP_MAGIC:
            continue
        hlen = min(fr[bootp + 2], 16)
        yiaddr = ".".join(str(b) for b in fr[bootp + 16 : bootp + 20])
        chaddr = ":".join(f"{b:02x}" for b in fr[bootp + 28 : bootp + 28 + hlen])
        mtype = None
        i = bootp + 240
        while i < len(fr):
            code = fr[i]
            if code == 255:
                break
            if code == 0:
                i += 1
                continue
            if i + 1 >= len(fr):
                break
            ln = fr[i + 1]
            if code == 53 and ln >= 1 and i + 2 < len(fr):
                mtype = fr[i + 2]
                break
            i += 2 + ln
        if mtype is None:
            continue
        yield ts, MSG_TYPES.get(mtype, str(mtype)), yiaddr, chaddr, src_ip


if __name__ == "__main__":
    for m in dhcp_messages(sys.argv[1]):
        print(f"{m[0]:.6f} {m[1]} {m[2]} {m[3]} {m[4]}")
