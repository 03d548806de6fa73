//! Wire formats, zero-copy: Ethernet/802.1Q/IPv4/IPv6/UDP frame parsing and in-place building
//! (`frame`), and DHCPv4 message views and writers (`dhcp4`). Parsing validates lengths once and
//! then hands out typed accessors (smoltcp's shape); nothing here allocates.

pub mod dhcp4;
pub mod dhcp6;
pub mod frame;

/// Why a received frame was dropped. Every variant has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    FrameTooShort = 0,
    NotIp,
    BadIpHeader,
    IpFragment,
    NotUdp,
    BadUdpLength,
    NotDhcpPort,
    DhcpTooShort,
    BadMagicCookie,
    BadOptions,
    NotBootRequest,
    MissingMessageType,
    UnknownMessageType,
    BadHardwareAddress,
    NoSubnet,
    NotOurServerId,
    NoAddressAvailable,
    NotServing,
    JournalFull,
    ReplyTooLarge,
    NoLeaseForClient,
    Disabled,
    OversizedFrame,
    Unsupported,
}

impl DropReason {
    pub const COUNT: usize = DropReason::Unsupported as usize + 1;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::FrameTooShort,
        DropReason::NotIp,
        DropReason::BadIpHeader,
        DropReason::IpFragment,
        DropReason::NotUdp,
        DropReason::BadUdpLength,
        DropReason::NotDhcpPort,
        DropReason::DhcpTooShort,
        DropReason::BadMagicCookie,
        DropReason::BadOptions,
        DropReason::NotBootRequest,
        DropReason::MissingMessageType,
        DropReason::UnknownMessageType,
        DropReason::BadHardwareAddress,
        DropReason::NoSubnet,
        DropReason::NotOurServerId,
        DropReason::NoAddressAvailable,
        DropReason::NotServing,
        DropReason::JournalFull,
        DropReason::ReplyTooLarge,
        DropReason::NoLeaseForClient,
        DropReason::Disabled,
        DropReason::OversizedFrame,
        DropReason::Unsupported,
    ];

    /// Statistic name, Kea style (`pkt4-…`), xdhcp-specific reasons prefixed `xdhcp-drop-`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::FrameTooShort => "frame-too-short",
            DropReason::NotIp => "not-ip",
            DropReason::BadIpHeader => "bad-ip-header",
            DropReason::IpFragment => "ip-fragment",
            DropReason::NotUdp => "not-udp",
            DropReason::BadUdpLength => "bad-udp-length",
            DropReason::NotDhcpPort => "not-dhcp-port",
            DropReason::DhcpTooShort => "dhcp-too-short",
            DropReason::BadMagicCookie => "bad-magic-cookie",
            DropReason::BadOptions => "bad-options",
            DropReason::NotBootRequest => "not-boot-request",
            DropReason::MissingMessageType => "missing-message-type",
            DropReason::UnknownMessageType => "unknown-message-type",
            DropReason::BadHardwareAddress => "bad-hardware-address",
            DropReason::NoSubnet => "no-subnet",
            DropReason::NotOurServerId => "not-our-server-id",
            DropReason::NoAddressAvailable => "no-address-available",
            DropReason::NotServing => "not-serving",
            DropReason::JournalFull => "journal-full",
            DropReason::ReplyTooLarge => "reply-too-large",
            DropReason::NoLeaseForClient => "no-lease-for-client",
            DropReason::Disabled => "dhcp-disabled",
            DropReason::OversizedFrame => "oversized-frame",
            DropReason::Unsupported => "unsupported",
        }
    }

    /// Malformed input (as opposed to a well-formed packet we chose not to answer).
    pub fn is_malformed(self) -> bool {
        (self as u8) <= DropReason::BadHardwareAddress as u8 && self != DropReason::NotDhcpPort
            || self == DropReason::OversizedFrame
    }
}

/// Internet checksum (RFC 1071) over `data`, starting from a partial sum; `data` starts at an
/// even offset of what is checksummed, as with every caller.
///
/// Every reply is checksummed in full (AF_XDP has no offload), so this is on the hot path. It
/// adds 32-bit words in the machine's byte order into 64 bits and turns the folded sum into
/// network order once at the end: the ones'-complement sum does not depend on byte order
/// (RFC 1071 section 2(B)), and without a byte swap per word the loop becomes wide vector adds.
pub fn checksum_add(sum: u32, data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if rest.len() >= 2 {
        acc += u64::from(u16::from_ne_bytes([rest[0], rest[1]]));
    }
    if rest.len() % 2 == 1 {
        // An odd last byte is the high byte of a word padded with zero (network order).
        acc += u64::from(u16::from_ne_bytes([rest[rest.len() - 1], 0]));
    }
    // Folding keeps the sum modulo 0xffff and keeps it non-zero if it was.
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    sum + u32::from(u16::from_be(acc as u16))
}

/// Fold a partial sum into the final one's-complement checksum.
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::{checksum_add, checksum_finish};
    use proptest::prelude::*;

    /// RFC 1071 as written: 16-bit words in network order, one at a time.
    fn reference(mut sum: u32, data: &[u8]) -> u32 {
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
        sum
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // The example header of RFC 1071's usual illustration (checksum field zeroed): 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum_finish(checksum_add(0, &h)), 0xb861);
        assert_eq!(checksum_finish(checksum_add(0, &[])), 0xffff);
        assert_eq!(checksum_finish(checksum_add(0, &[0, 0, 0])), 0xffff);
        // Words that sum to a multiple of 0xffff: negative zero, as the reference gives it.
        assert_eq!(checksum_finish(checksum_add(0, &[0xff, 0xff])), 0);
        assert_eq!(
            checksum_finish(checksum_add(0, &[0xff, 0xff, 0xff, 0xff, 0xff])),
            0x00ff
        );
    }

    proptest! {
        #[test]
        fn matches_the_reference_for_any_data_length_and_start(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            start in 0u32..0x20_0000,
        ) {
            prop_assert_eq!(
                checksum_finish(checksum_add(start, &data)),
                checksum_finish(reference(start, &data))
            );
        }
    }
}
