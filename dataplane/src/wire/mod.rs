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

/// Internet checksum (RFC 1071) over `data`, starting from a partial sum.
pub fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Fold a partial sum into the final one's-complement checksum.
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
