//! Ethernet (with at most one 802.1Q/802.1ad tag), IPv4/IPv6 and UDP: parse a received frame into
//! addresses and the UDP payload's position, and build reply headers in place around a payload that
//! the engine has already written. Checksums are always computed in full on transmit (AF_XDP has no
//! offload); on receive the UDP checksum is not verified, because frames from a kernel socket over
//! veth carry CHECKSUM_PARTIAL and a correct server must accept them.

use super::{checksum_add, checksum_finish, DropReason};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// Largest frame we accept or build (standard MTU plus headers); larger ones are dropped.
pub const MAX_FRAME: usize = 1792;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
    },
}

/// A parsed UDP-in-IP-in-Ethernet frame. `payload` is the byte range of the UDP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// The 802.1Q TCI (priority + VLAN id) when tagged; replies carry the same tag.
    pub vlan_tci: Option<u16>,
    pub l3: L3,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_start: usize,
    pub payload_end: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parse a frame. Returns the reason when it is not a well-formed UDP datagram.
pub fn parse_udp_frame(frame: &[u8]) -> Result<UdpFrame, DropReason> {
    if frame.len() > MAX_FRAME {
        return Err(DropReason::OversizedFrame);
    }
    if frame.len() < ETH_HLEN {
        return Err(DropReason::FrameTooShort);
    }
    let mut dst_mac = [0u8; 6];
    let mut src_mac = [0u8; 6];
    dst_mac.copy_from_slice(&frame[0..6]);
    src_mac.copy_from_slice(&frame[6..12]);
    let mut ethertype = be16(frame, 12);
    let mut off = ETH_HLEN;
    let mut vlan_tci = None;
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        if frame.len() < off + VLAN_HLEN {
            return Err(DropReason::FrameTooShort);
        }
        vlan_tci = Some(be16(frame, off));
        ethertype = be16(frame, off + 2);
        off += VLAN_HLEN;
    }
    let (l3, udp_off, udp_len_limit) = match ethertype {
        ETHERTYPE_IPV4 => {
            if frame.len() < off + IPV4_HLEN {
                return Err(DropReason::FrameTooShort);
            }
            let ip = &frame[off..];
            if ip[0] >> 4 != 4 {
                return Err(DropReason::BadIpHeader);
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(be16(ip, 2));
            if ihl < IPV4_HLEN || ip.len() < ihl || total < ihl || total > ip.len() {
                return Err(DropReason::BadIpHeader);
            }
            let frag = be16(ip, 6);
            if frag & 0x3fff != 0 {
                return Err(DropReason::IpFragment);
            }
            if ip[9] != 17 {
                return Err(DropReason::NotUdp);
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (L3::V4 { src, dst }, off + ihl, off + total)
        }
        ETHERTYPE_IPV6 => {
            if frame.len() < off + IPV6_HLEN {
                return Err(DropReason::FrameTooShort);
            }
            let ip = &frame[off..];
            if ip[0] >> 4 != 6 {
                return Err(DropReason::BadIpHeader);
            }
            let payload_len = usize::from(be16(ip, 4));
            if ip.len() < IPV6_HLEN + payload_len {
                return Err(DropReason::BadIpHeader);
            }
            // Extension headers are not expected on DHCPv6; the XDP program passes unusual ones.
            if ip[6] != 17 {
                return Err(DropReason::NotUdp);
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            (
                L3::V6 {
                    src: Ipv6Addr::from(s),
                    dst: Ipv6Addr::from(d),
                    hop_limit: ip[7],
                },
                off + IPV6_HLEN,
                off + IPV6_HLEN + payload_len,
            )
        }
        _ => return Err(DropReason::NotIp),
    };
    if udp_len_limit < udp_off + UDP_HLEN {
        return Err(DropReason::BadUdpLength);
    }
    let udp = &frame[udp_off..];
    let udp_len = usize::from(be16(udp, 4));
    if udp_len < UDP_HLEN || udp_off + udp_len > udp_len_limit {
        return Err(DropReason::BadUdpLength);
    }
    Ok(UdpFrame {
        dst_mac,
        src_mac,
        vlan_tci,
        l3,
        src_port: be16(udp, 0),
        dst_port: be16(udp, 2),
        payload_start: udp_off + UDP_HLEN,
        payload_end: udp_off + udp_len,
    })
}

/// Where a reply's payload must be written so that the headers fit in front of it.
pub fn payload_offset_v4(vlan: Option<u16>) -> usize {
    ETH_HLEN + if vlan.is_some() { VLAN_HLEN } else { 0 } + IPV4_HLEN + UDP_HLEN
}

pub fn payload_offset_v6(vlan: Option<u16>) -> usize {
    ETH_HLEN + if vlan.is_some() { VLAN_HLEN } else { 0 } + IPV6_HLEN + UDP_HLEN
}

/// Addressing of a reply frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp4Reply {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan_tci: Option<u16>,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

fn write_eth(
    buf: &mut [u8],
    src: [u8; 6],
    dst: [u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
) -> usize {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    match vlan {
        Some(tci) => {
            buf[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            buf[14..16].copy_from_slice(&tci.to_be_bytes());
            buf[16..18].copy_from_slice(&ethertype.to_be_bytes());
            ETH_HLEN + VLAN_HLEN
        }
        None => {
            buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
            ETH_HLEN
        }
    }
}

/// Write the UDP header at `udp_off` for a payload already in place, with the full checksum over
/// the pseudo header (`pseudo`: the partial sum of the source and destination addresses).
/// Returns the frame length.
fn write_udp_header(
    buf: &mut [u8],
    udp_off: usize,
    src_port: u16,
    dst_port: u16,
    payload_len: usize,
    pseudo: u32,
) -> usize {
    let udp_len = UDP_HLEN + payload_len;
    buf[udp_off..udp_off + 2].copy_from_slice(&src_port.to_be_bytes());
    buf[udp_off + 2..udp_off + 4].copy_from_slice(&dst_port.to_be_bytes());
    buf[udp_off + 4..udp_off + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    buf[udp_off + 6..udp_off + 8].copy_from_slice(&[0, 0]);
    let sum = checksum_add(
        pseudo + 17 + udp_len as u32,
        &buf[udp_off..udp_off + udp_len],
    );
    // An all-zero UDP checksum means "none" (and is illegal in IPv6): send its equivalent.
    let csum = match checksum_finish(sum) {
        0 => 0xffff,
        c => c,
    };
    buf[udp_off + 6..udp_off + 8].copy_from_slice(&csum.to_be_bytes());
    udp_off + udp_len
}

/// Write Ethernet, IPv4 and UDP headers in front of a payload of `payload_len` bytes that already
/// sits at `payload_offset_v4(r.vlan_tci)`. Returns the frame length.
pub fn write_udp4_headers(buf: &mut [u8], r: &Udp4Reply, payload_len: usize) -> usize {
    let ip_off = write_eth(buf, r.src_mac, r.dst_mac, r.vlan_tci, ETHERTYPE_IPV4);
    let udp_off = ip_off + IPV4_HLEN;
    let udp_len = UDP_HLEN + payload_len;
    let total = IPV4_HLEN + udp_len;
    {
        let ip = &mut buf[ip_off..ip_off + IPV4_HLEN];
        ip[0] = 0x45;
        ip[1] = 0x10; // DSCP: low delay, as ISC dhcpd does
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&[0, 0]);
        ip[6..8].copy_from_slice(&[0x40, 0]); // DF
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&r.src_ip.octets());
        ip[16..20].copy_from_slice(&r.dst_ip.octets());
        let csum = checksum_finish(checksum_add(0, ip));
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
    }
    let pseudo = checksum_add(checksum_add(0, &r.src_ip.octets()), &r.dst_ip.octets());
    write_udp_header(buf, udp_off, r.src_port, r.dst_port, payload_len, pseudo)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp6Reply {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan_tci: Option<u16>,
    pub src_ip: Ipv6Addr,
    pub dst_ip: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub hop_limit: u8,
}

/// IPv6 counterpart of [`write_udp4_headers`]; the UDP checksum is mandatory in IPv6.
pub fn write_udp6_headers(buf: &mut [u8], r: &Udp6Reply, payload_len: usize) -> usize {
    let ip_off = write_eth(buf, r.src_mac, r.dst_mac, r.vlan_tci, ETHERTYPE_IPV6);
    let udp_off = ip_off + IPV6_HLEN;
    let udp_len = UDP_HLEN + payload_len;
    {
        let ip = &mut buf[ip_off..ip_off + IPV6_HLEN];
        ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = r.hop_limit;
        ip[8..24].copy_from_slice(&r.src_ip.octets());
        ip[24..40].copy_from_slice(&r.dst_ip.octets());
    }
    let pseudo = checksum_add(checksum_add(0, &r.src_ip.octets()), &r.dst_ip.octets());
    write_udp_header(buf, udp_off, r.src_port, r.dst_port, payload_len, pseudo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_reply(vlan: Option<u16>) -> (Vec<u8>, usize) {
        let r = Udp4Reply {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vlan_tci: vlan,
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 67,
            dst_port: 68,
        };
        let mut buf = vec![0u8; 400];
        let off = payload_offset_v4(vlan);
        for (i, b) in buf[off..off + 300].iter_mut().enumerate() {
            *b = i as u8;
        }
        let n = write_udp4_headers(&mut buf, &r, 300);
        buf.truncate(n);
        (buf, off)
    }

    #[test]
    fn built_v4_frame_parses_back_with_valid_checksums() {
        for vlan in [None, Some(0x2064)] {
            let (buf, off) = sample_reply(vlan);
            let f = parse_udp_frame(&buf).unwrap();
            assert_eq!(f.vlan_tci, vlan);
            assert_eq!(f.payload_start, off);
            assert_eq!(f.payload_end - f.payload_start, 300);
            assert_eq!((f.src_port, f.dst_port), (67, 68));
            let ip_off = off - UDP_HLEN - IPV4_HLEN;
            assert_eq!(
                checksum_finish(checksum_add(0, &buf[ip_off..ip_off + 20])),
                0
            );
            // UDP checksum over pseudo header + segment must verify to 0.
            let mut sum = checksum_add(0, &buf[ip_off + 12..ip_off + 20]);
            sum += 17 + (buf.len() - ip_off - 20) as u32;
            sum = checksum_add(sum, &buf[ip_off + 20..]);
            assert_eq!(checksum_finish(sum), 0);
        }
    }

    #[test]
    fn truncations_never_panic_and_are_rejected() {
        let (buf, _) = sample_reply(Some(5));
        for n in 0..buf.len() {
            assert!(parse_udp_frame(&buf[..n]).is_err(), "prefix {n} accepted");
        }
    }

    #[test]
    fn fragments_and_non_udp_are_rejected() {
        let (mut buf, _) = sample_reply(None);
        buf[14 + 6] = 0x20; // MF
        assert_eq!(parse_udp_frame(&buf), Err(DropReason::IpFragment));
        let (mut buf, _) = sample_reply(None);
        buf[14 + 9] = 6;
        assert_eq!(parse_udp_frame(&buf), Err(DropReason::NotUdp));
        let (mut buf, _) = sample_reply(None);
        buf[12] = 0x08;
        buf[13] = 0x06;
        assert_eq!(parse_udp_frame(&buf), Err(DropReason::NotIp));
        let big = vec![0u8; MAX_FRAME + 1];
        assert_eq!(parse_udp_frame(&big), Err(DropReason::OversizedFrame));
    }
}
