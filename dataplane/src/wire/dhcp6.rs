//! DHCPv6 (RFC 8415) message view and writer, zero-copy and allocation-free.
//!
//! [`Dhcp6View::parse`] walks the Relay-forward chain (at most [`MAX_RELAYS`] levels, RFC 8415's
//! hop-count limit), records where each relay's header and options sit, and validates the option
//! structure of the client message once, IA_NA/IA_TA/IA_PD contents included. Accessors then hand out
//! slices of the packet; iterating options, IAs, addresses and prefixes cannot fail afterwards.
//! [`Dhcp6Writer`] writes a reply in place into a caller-owned buffer (a UMEM frame), with nested
//! options (IA → IAADDR → status code, Relay-reply → Relay-message → reply) whose lengths are
//! back-patched when the option is closed, so nothing is measured or allocated in advance.
//! [`RequestBuilder6`] builds client and relay messages for tests, fuzz seeds and load generators.

use super::DropReason;
use std::net::Ipv6Addr;

pub const SERVER_PORT: u16 = 547;
pub const CLIENT_PORT: u16 = 546;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_RELAYS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// RFC 8415 §7.6 HOP_COUNT_LIMIT: a relay chain is never deeper than this.
pub const MAX_RELAYS: usize = 32;
/// Deepest option nesting the writer supports (relay chain + IA + address + status).
pub const MAX_NESTING: usize = MAX_RELAYS + 8;

pub const OPT_CLIENTID: u16 = 1;
pub const OPT_SERVERID: u16 = 2;
pub const OPT_IA_NA: u16 = 3;
pub const OPT_IA_TA: u16 = 4;
pub const OPT_IAADDR: u16 = 5;
pub const OPT_ORO: u16 = 6;
pub const OPT_PREFERENCE: u16 = 7;
pub const OPT_ELAPSED_TIME: u16 = 8;
pub const OPT_RELAY_MSG: u16 = 9;
pub const OPT_UNICAST: u16 = 12;
pub const OPT_STATUS_CODE: u16 = 13;
pub const OPT_RAPID_COMMIT: u16 = 14;
pub const OPT_INTERFACE_ID: u16 = 18;
pub const OPT_DNS_SERVERS: u16 = 23;
pub const OPT_DOMAIN_LIST: u16 = 24;
pub const OPT_IA_PD: u16 = 25;
pub const OPT_IAPREFIX: u16 = 26;
pub const OPT_PD_EXCLUDE: u16 = 67;
pub const OPT_CLIENT_LINKLAYER_ADDR: u16 = 79;

/// Status codes (RFC 8415 §21.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    Success = 0,
    UnspecFail = 1,
    NoAddrsAvail = 2,
    NoBinding = 3,
    NotOnLink = 4,
    UseMulticast = 5,
    NoPrefixAvail = 6,
}

impl Status {
    pub fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Success,
            1 => Status::UnspecFail,
            2 => Status::NoAddrsAvail,
            3 => Status::NoBinding,
            4 => Status::NotOnLink,
            5 => Status::UseMulticast,
            6 => Status::NoPrefixAvail,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType6 {
    Solicit = 1,
    Advertise = 2,
    Request = 3,
    Confirm = 4,
    Renew = 5,
    Rebind = 6,
    Reply = 7,
    Release = 8,
    Decline = 9,
    Reconfigure = 10,
    InformationRequest = 11,
    RelayForw = 12,
    RelayRepl = 13,
}

impl MessageType6 {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Solicit,
            2 => Self::Advertise,
            3 => Self::Request,
            4 => Self::Confirm,
            5 => Self::Renew,
            6 => Self::Rebind,
            7 => Self::Reply,
            8 => Self::Release,
            9 => Self::Decline,
            10 => Self::Reconfigure,
            11 => Self::InformationRequest,
            12 => Self::RelayForw,
            13 => Self::RelayRepl,
            _ => return None,
        })
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ip6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// Check that `buf` is a sequence of well-formed options (code, length, payload).
fn validate_options(buf: &[u8]) -> Result<(), DropReason> {
    let mut i = 0;
    while i < buf.len() {
        if i + 4 > buf.len() {
            return Err(DropReason::BadOptions);
        }
        let len = usize::from(be16(buf, i + 2));
        if i + 4 + len > buf.len() {
            return Err(DropReason::BadOptions);
        }
        i += 4 + len;
    }
    Ok(())
}

/// A validated option area. Iterating it yields (code, payload).
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    buf: &'a [u8],
}

impl<'a> Options<'a> {
    /// Wrap an area already checked by [`validate_options`]; an area that is not well formed simply
    /// ends iteration early (never panics).
    fn new(buf: &'a [u8]) -> Options<'a> {
        Options { buf }
    }

    pub fn iter(&self) -> OptionIter<'a> {
        OptionIter {
            buf: self.buf,
            pos: 0,
        }
    }

    /// The first instance of `code`.
    pub fn get(&self, code: u16) -> Option<&'a [u8]> {
        self.iter().find(|(c, _)| *c == code).map(|(_, d)| d)
    }

    pub fn has(&self, code: u16) -> bool {
        self.get(code).is_some()
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

pub struct OptionIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf;
        let i = self.pos;
        if i + 4 > b.len() {
            return None;
        }
        let len = usize::from(be16(b, i + 2));
        if i + 4 + len > b.len() {
            return None;
        }
        self.pos = i + 4 + len;
        Some((be16(b, i), &b[i + 4..i + 4 + len]))
    }
}

/// Which identity association an IA option is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IaKind {
    Na,
    Ta,
    Pd,
}

impl IaKind {
    pub fn code(self) -> u16 {
        match self {
            IaKind::Na => OPT_IA_NA,
            IaKind::Ta => OPT_IA_TA,
            IaKind::Pd => OPT_IA_PD,
        }
    }
}

/// An IA_NA, IA_TA or IA_PD option of the client message.
#[derive(Debug, Clone, Copy)]
pub struct Ia<'a> {
    pub kind: IaKind,
    pub iaid: u32,
    /// 0 for IA_TA (which has no timers).
    pub t1: u32,
    pub t2: u32,
    pub options: Options<'a>,
}

/// An IA Address option (code 5).
#[derive(Debug, Clone, Copy)]
pub struct IaAddr<'a> {
    pub addr: Ipv6Addr,
    pub preferred: u32,
    pub valid: u32,
    pub options: Options<'a>,
}

/// An IA Prefix option (code 26).
#[derive(Debug, Clone, Copy)]
pub struct IaPrefix<'a> {
    pub preferred: u32,
    pub valid: u32,
    pub prefix_len: u8,
    pub prefix: Ipv6Addr,
    pub options: Options<'a>,
}

impl<'a> Ia<'a> {
    fn parse(code: u16, d: &'a [u8]) -> Option<Ia<'a>> {
        match code {
            OPT_IA_NA | OPT_IA_PD if d.len() >= 12 => Some(Ia {
                kind: if code == OPT_IA_NA {
                    IaKind::Na
                } else {
                    IaKind::Pd
                },
                iaid: be32(d, 0),
                t1: be32(d, 4),
                t2: be32(d, 8),
                options: Options::new(&d[12..]),
            }),
            OPT_IA_TA if d.len() >= 4 => Some(Ia {
                kind: IaKind::Ta,
                iaid: be32(d, 0),
                t1: 0,
                t2: 0,
                options: Options::new(&d[4..]),
            }),
            _ => None,
        }
    }

    /// IA Address options (IA_NA and IA_TA).
    pub fn addrs(&self) -> impl Iterator<Item = IaAddr<'a>> + 'a {
        self.options
            .iter()
            .filter(|(c, d)| *c == OPT_IAADDR && d.len() >= 24)
            .map(|(_, d)| IaAddr {
                addr: ip6_at(d, 0),
                preferred: be32(d, 16),
                valid: be32(d, 20),
                options: Options::new(&d[24..]),
            })
    }

    /// IA Prefix options (IA_PD).
    pub fn prefixes(&self) -> impl Iterator<Item = IaPrefix<'a>> + 'a {
        self.options
            .iter()
            .filter(|(c, d)| *c == OPT_IAPREFIX && d.len() >= 25)
            .map(|(_, d)| IaPrefix {
                preferred: be32(d, 0),
                valid: be32(d, 4),
                prefix_len: d[8],
                prefix: ip6_at(d, 9),
                options: Options::new(&d[25..]),
            })
    }
}

/// Validate the contents of an IA option: fixed part, sub-options, and IAADDR/IAPREFIX contents.
fn validate_ia(code: u16, d: &[u8]) -> Result<(), DropReason> {
    let fixed = if code == OPT_IA_TA { 4 } else { 12 };
    if d.len() < fixed {
        return Err(DropReason::BadOptions);
    }
    let sub = &d[fixed..];
    validate_options(sub)?;
    for (c, p) in Options::new(sub).iter() {
        match c {
            OPT_IAADDR => {
                if p.len() < 24 {
                    return Err(DropReason::BadOptions);
                }
                validate_options(&p[24..])?;
            }
            OPT_IAPREFIX => {
                if p.len() < 25 || p[8] > 128 {
                    return Err(DropReason::BadOptions);
                }
                validate_options(&p[25..])?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Where one Relay-forward header sits in the packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayLoc {
    /// Offset of the relay message (msg-type byte) in the packet.
    start: u16,
    /// End of its options (exclusive).
    end: u16,
}

/// One Relay-forward layer, outermost (closest to the server) first.
#[derive(Debug, Clone, Copy)]
pub struct Relay<'a> {
    pub hop_count: u8,
    pub link_addr: Ipv6Addr,
    pub peer_addr: Ipv6Addr,
    /// The relay's options (Relay Message included).
    pub options: Options<'a>,
}

impl<'a> Relay<'a> {
    pub fn interface_id(&self) -> Option<&'a [u8]> {
        self.options.get(OPT_INTERFACE_ID)
    }
}

/// A validated DHCPv6 message (and the relays it came through) borrowing the packet bytes.
pub struct Dhcp6View<'a> {
    pkt: &'a [u8],
    relays: [RelayLoc; MAX_RELAYS],
    n_relays: u8,
    /// The client message's range in `pkt`.
    msg_start: u16,
    msg_end: u16,
}

impl<'a> Dhcp6View<'a> {
    /// Parse a UDP payload: unwrap Relay-forward layers, then validate the client message's options.
    pub fn parse(pkt: &'a [u8]) -> Result<Dhcp6View<'a>, DropReason> {
        if pkt.len() > usize::from(u16::MAX) {
            return Err(DropReason::OversizedFrame);
        }
        let mut v = Dhcp6View {
            pkt,
            relays: [RelayLoc::default(); MAX_RELAYS],
            n_relays: 0,
            msg_start: 0,
            msg_end: 0,
        };
        let (mut start, mut end) = (0usize, pkt.len());
        loop {
            let m = &pkt[start..end];
            if m.is_empty() {
                return Err(DropReason::DhcpTooShort);
            }
            match m[0] {
                12 => {
                    // Relay-forward: type, hop-count, link-address, peer-address, options.
                    if m.len() < 34 {
                        return Err(DropReason::DhcpTooShort);
                    }
                    if usize::from(v.n_relays) == MAX_RELAYS {
                        return Err(DropReason::BadOptions);
                    }
                    let opts = &m[34..];
                    validate_options(opts)?;
                    let inner = Options::new(opts).iter().find(|(c, _)| *c == OPT_RELAY_MSG);
                    let Some((_, inner)) = inner else {
                        return Err(DropReason::BadOptions);
                    };
                    v.relays[usize::from(v.n_relays)] = RelayLoc {
                        start: start as u16,
                        end: end as u16,
                    };
                    v.n_relays += 1;
                    // `inner` is a sub-slice of `pkt`: compute its offsets.
                    let inner_start = inner.as_ptr() as usize - pkt.as_ptr() as usize;
                    start = inner_start;
                    end = inner_start + inner.len();
                }
                13 => return Err(DropReason::NotBootRequest),
                _ => {
                    if m.len() < 4 {
                        return Err(DropReason::DhcpTooShort);
                    }
                    let opts = &m[4..];
                    validate_options(opts)?;
                    for (c, d) in Options::new(opts).iter() {
                        if matches!(c, OPT_IA_NA | OPT_IA_TA | OPT_IA_PD) {
                            validate_ia(c, d)?;
                        }
                    }
                    v.msg_start = start as u16;
                    v.msg_end = end as u16;
                    return Ok(v);
                }
            }
        }
    }

    fn msg(&self) -> &'a [u8] {
        &self.pkt[usize::from(self.msg_start)..usize::from(self.msg_end)]
    }

    /// Raw message type of the client message (not of the relays).
    pub fn msg_type_raw(&self) -> u8 {
        self.msg()[0]
    }

    pub fn msg_type(&self) -> Result<MessageType6, DropReason> {
        MessageType6::from_u8(self.msg_type_raw()).ok_or(DropReason::UnknownMessageType)
    }

    pub fn xid(&self) -> [u8; 3] {
        let m = self.msg();
        [m[1], m[2], m[3]]
    }

    pub fn options(&self) -> Options<'a> {
        Options::new(&self.msg()[4..])
    }

    pub fn option(&self, code: u16) -> Option<&'a [u8]> {
        self.options().get(code)
    }

    /// The client DUID (option 1), if present and non-empty.
    pub fn client_id(&self) -> Option<&'a [u8]> {
        self.option(OPT_CLIENTID).filter(|d| !d.is_empty())
    }

    pub fn server_id(&self) -> Option<&'a [u8]> {
        self.option(OPT_SERVERID)
    }

    pub fn rapid_commit(&self) -> bool {
        self.options().has(OPT_RAPID_COMMIT)
    }

    /// Elapsed time in hundredths of a second (0 when absent).
    pub fn elapsed_time(&self) -> u16 {
        match self.option(OPT_ELAPSED_TIME) {
            Some(d) if d.len() == 2 => be16(d, 0),
            _ => 0,
        }
    }

    /// The codes in the Option Request Option (option 6).
    pub fn oro(&self) -> impl Iterator<Item = u16> + 'a {
        self.option(OPT_ORO)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    pub fn requests_option(&self, code: u16) -> bool {
        self.oro().any(|c| c == code)
    }

    /// Every IA_NA, IA_TA and IA_PD, in message order.
    pub fn ias(&self) -> impl Iterator<Item = Ia<'a>> + 'a {
        self.options().iter().filter_map(|(c, d)| Ia::parse(c, d))
    }

    pub fn relay_count(&self) -> usize {
        usize::from(self.n_relays)
    }

    pub fn is_relayed(&self) -> bool {
        self.n_relays > 0
    }

    /// Relay layer `i`, 0 = outermost (the relay that sent the packet to us).
    pub fn relay(&self, i: usize) -> Option<Relay<'a>> {
        if i >= usize::from(self.n_relays) {
            return None;
        }
        let loc = self.relays[i];
        let m = &self.pkt[usize::from(loc.start)..usize::from(loc.end)];
        Some(Relay {
            hop_count: m[1],
            link_addr: ip6_at(m, 2),
            peer_addr: ip6_at(m, 18),
            options: Options::new(&m[34..]),
        })
    }

    /// The relay closest to the client (whose link-address names the client's link).
    pub fn innermost_relay(&self) -> Option<Relay<'a>> {
        self.relay(usize::from(self.n_relays).checked_sub(1)?)
    }

    /// The first interface-id met walking from the client outwards (Kea's `RELAY_GET_FIRST`).
    pub fn interface_id(&self) -> Option<&'a [u8]> {
        (0..self.relay_count())
            .rev()
            .find_map(|i| self.relay(i).and_then(|r| r.interface_id()))
    }

    /// The client link-layer address option (RFC 6939) of the innermost relay that carries one:
    /// (hardware type, address).
    pub fn client_linklayer_addr(&self) -> Option<(u16, &'a [u8])> {
        (0..self.relay_count()).rev().find_map(|i| {
            let d = self.relay(i)?.options.get(OPT_CLIENT_LINKLAYER_ADDR)?;
            (d.len() > 2).then(|| (be16(d, 0), &d[2..]))
        })
    }
}

/// Writes a DHCPv6 message (optionally wrapped in Relay-reply layers) into a caller-owned buffer.
/// Running out of room or nesting too deep sets `overflow` instead of panicking; [`finish`]
/// reports it. Nested options are opened with [`begin`] and closed with [`end`], which writes
/// the length.
///
/// [`finish`]: Dhcp6Writer::finish
/// [`begin`]: Dhcp6Writer::begin
/// [`end`]: Dhcp6Writer::end
pub struct Dhcp6Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
    open: [u32; MAX_NESTING],
    depth: usize,
}

impl<'a> Dhcp6Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Dhcp6Writer<'a> {
        Dhcp6Writer {
            buf,
            pos: 0,
            overflow: false,
            open: [0; MAX_NESTING],
            depth: 0,
        }
    }

    fn put(&mut self, data: &[u8]) {
        if self.overflow || self.pos + data.len() > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.pos..self.pos + data.len()].copy_from_slice(data);
        self.pos += data.len();
    }

    /// A Relay-reply header (type 13); follow it with options and a Relay Message option.
    pub fn relay_repl_header(&mut self, hop_count: u8, link: Ipv6Addr, peer: Ipv6Addr) {
        self.put(&[MessageType6::RelayRepl as u8, hop_count]);
        self.put(&link.octets());
        self.put(&peer.octets());
    }

    /// A message header: type and transaction id.
    pub fn message_header(&mut self, mt: MessageType6, xid: [u8; 3]) {
        self.put(&[mt as u8, xid[0], xid[1], xid[2]]);
    }

    /// One complete option.
    pub fn option(&mut self, code: u16, data: &[u8]) {
        if data.len() > usize::from(u16::MAX) {
            self.overflow = true;
            return;
        }
        self.put(&code.to_be_bytes());
        self.put(&(data.len() as u16).to_be_bytes());
        self.put(data);
    }

    pub fn option_u32(&mut self, code: u16, v: u32) {
        self.option(code, &v.to_be_bytes());
    }

    /// Copy pre-encoded options (headers included) verbatim.
    pub fn raw(&mut self, encoded: &[u8]) {
        self.put(encoded);
    }

    /// Open a nested option; its payload is whatever is written until the matching [`end`].
    ///
    /// [`end`]: Dhcp6Writer::end
    pub fn begin(&mut self, code: u16) {
        if self.depth == MAX_NESTING {
            self.overflow = true;
            return;
        }
        self.open[self.depth] = self.pos as u32;
        self.depth += 1;
        self.put(&code.to_be_bytes());
        self.put(&[0, 0]);
    }

    /// Close the innermost open option, back-patching its length.
    pub fn end(&mut self) {
        if self.depth == 0 {
            self.overflow = true;
            return;
        }
        self.depth -= 1;
        if self.overflow {
            return;
        }
        let at = self.open[self.depth] as usize;
        let len = self.pos - at - 4;
        if len > usize::from(u16::MAX) {
            self.overflow = true;
            return;
        }
        self.buf[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
    }

    /// An IA_NA/IA_PD header; close with [`Dhcp6Writer::end`].
    pub fn begin_ia(&mut self, kind: IaKind, iaid: u32, t1: u32, t2: u32) {
        self.begin(kind.code());
        self.put(&iaid.to_be_bytes());
        if kind != IaKind::Ta {
            self.put(&t1.to_be_bytes());
            self.put(&t2.to_be_bytes());
        }
    }

    /// An IA Address; close with [`Dhcp6Writer::end`] (sub-options may follow).
    pub fn begin_iaaddr(&mut self, addr: Ipv6Addr, preferred: u32, valid: u32) {
        self.begin(OPT_IAADDR);
        self.put(&addr.octets());
        self.put(&preferred.to_be_bytes());
        self.put(&valid.to_be_bytes());
    }

    /// An IA Prefix; close with [`Dhcp6Writer::end`].
    pub fn begin_iaprefix(&mut self, prefix: Ipv6Addr, prefix_len: u8, preferred: u32, valid: u32) {
        self.begin(OPT_IAPREFIX);
        self.put(&preferred.to_be_bytes());
        self.put(&valid.to_be_bytes());
        self.put(&[prefix_len]);
        self.put(&prefix.octets());
    }

    /// A Status Code option with a message.
    pub fn status(&mut self, s: Status, msg: &str) {
        self.begin(OPT_STATUS_CODE);
        self.put(&(s as u16).to_be_bytes());
        self.put(msg.as_bytes());
        self.end();
    }

    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// The message length, or `None` if it did not fit or an option was left open.
    pub fn finish(self) -> Option<usize> {
        (!self.overflow && self.depth == 0).then_some(self.pos)
    }
}

/// Builds client messages and relay wrappings (tests, fuzz seeds, load generators). Allocates.
#[derive(Debug, Clone)]
pub struct RequestBuilder6 {
    pub buf: Vec<u8>,
}

impl RequestBuilder6 {
    pub fn new(mt: MessageType6, xid: u32) -> Self {
        let x = xid.to_be_bytes();
        RequestBuilder6 {
            buf: vec![mt as u8, x[1], x[2], x[3]],
        }
    }

    pub fn option(mut self, code: u16, data: &[u8]) -> Self {
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    pub fn client_id(self, duid: &[u8]) -> Self {
        self.option(OPT_CLIENTID, duid)
    }

    pub fn server_id(self, duid: &[u8]) -> Self {
        self.option(OPT_SERVERID, duid)
    }

    pub fn oro(self, codes: &[u16]) -> Self {
        let b: Vec<u8> = codes.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.option(OPT_ORO, &b)
    }

    pub fn elapsed(self, hundredths: u16) -> Self {
        self.option(OPT_ELAPSED_TIME, &hundredths.to_be_bytes())
    }

    pub fn rapid_commit(self) -> Self {
        self.option(OPT_RAPID_COMMIT, &[])
    }

    /// An IA_NA with the given addresses as hints/bindings: (address, preferred, valid).
    pub fn ia_na(self, iaid: u32, addrs: &[(Ipv6Addr, u32, u32)]) -> Self {
        let mut d = Vec::new();
        d.extend_from_slice(&iaid.to_be_bytes());
        d.extend_from_slice(&[0; 8]);
        for (a, p, v) in addrs {
            d.extend_from_slice(&OPT_IAADDR.to_be_bytes());
            d.extend_from_slice(&24u16.to_be_bytes());
            d.extend_from_slice(&a.octets());
            d.extend_from_slice(&p.to_be_bytes());
            d.extend_from_slice(&v.to_be_bytes());
        }
        self.option(OPT_IA_NA, &d)
    }

    /// An IA_PD with the given prefixes: (prefix, length, preferred, valid).
    pub fn ia_pd(self, iaid: u32, prefixes: &[(Ipv6Addr, u8, u32, u32)]) -> Self {
        let mut d = Vec::new();
        d.extend_from_slice(&iaid.to_be_bytes());
        d.extend_from_slice(&[0; 8]);
        for (a, l, p, v) in prefixes {
            d.extend_from_slice(&OPT_IAPREFIX.to_be_bytes());
            d.extend_from_slice(&25u16.to_be_bytes());
            d.extend_from_slice(&p.to_be_bytes());
            d.extend_from_slice(&v.to_be_bytes());
            d.push(*l);
            d.extend_from_slice(&a.octets());
        }
        self.option(OPT_IA_PD, &d)
    }

    pub fn build(self) -> Vec<u8> {
        self.buf
    }

    /// Wrap a message in a Relay-forward (with an optional interface-id and extra relay options).
    pub fn relay_forw(
        inner: &[u8],
        hop_count: u8,
        link: Ipv6Addr,
        peer: Ipv6Addr,
        interface_id: Option<&[u8]>,
        extra: &[(u16, &[u8])],
    ) -> Vec<u8> {
        let mut b = vec![MessageType6::RelayForw as u8, hop_count];
        b.extend_from_slice(&link.octets());
        b.extend_from_slice(&peer.octets());
        let mut opt = |code: u16, d: &[u8]| {
            b.extend_from_slice(&code.to_be_bytes());
            b.extend_from_slice(&(d.len() as u16).to_be_bytes());
            b.extend_from_slice(d);
        };
        if let Some(id) = interface_id {
            opt(OPT_INTERFACE_ID, id);
        }
        for (c, d) in extra {
            opt(*c, d);
        }
        opt(OPT_RELAY_MSG, inner);
        b
    }
}

/// A reply as a test or a client sees it: the message inside any Relay-reply layers.
/// Parses replies (types 2, 7, 13) that [`Dhcp6View`] refuses as requests. Allocates; not for the hot path.
#[derive(Debug, Clone)]
pub struct ParsedReply {
    /// (hop-count, link, peer, interface-id) per Relay-reply layer, outermost first.
    pub relays: Vec<(u8, Ipv6Addr, Ipv6Addr, Option<Vec<u8>>)>,
    pub msg_type: u8,
    pub xid: [u8; 3],
    /// Top-level options of the message.
    pub options: Vec<(u16, Vec<u8>)>,
}

impl ParsedReply {
    pub fn parse(mut pkt: &[u8]) -> Result<ParsedReply, DropReason> {
        let mut relays = Vec::new();
        loop {
            if pkt.is_empty() {
                return Err(DropReason::DhcpTooShort);
            }
            if pkt[0] == 13 || pkt[0] == 12 {
                if pkt.len() < 34 || relays.len() == MAX_RELAYS {
                    return Err(DropReason::DhcpTooShort);
                }
                validate_options(&pkt[34..])?;
                let o = Options::new(&pkt[34..]);
                relays.push((
                    pkt[1],
                    ip6_at(pkt, 2),
                    ip6_at(pkt, 18),
                    o.get(OPT_INTERFACE_ID).map(|d| d.to_vec()),
                ));
                pkt = o.get(OPT_RELAY_MSG).ok_or(DropReason::BadOptions)?;
                continue;
            }
            if pkt.len() < 4 {
                return Err(DropReason::DhcpTooShort);
            }
            validate_options(&pkt[4..])?;
            let options = Options::new(&pkt[4..])
                .iter()
                .map(|(c, d)| (c, d.to_vec()))
                .collect();
            return Ok(ParsedReply {
                relays,
                msg_type: pkt[0],
                xid: [pkt[1], pkt[2], pkt[3]],
                options,
            });
        }
    }

    pub fn option(&self, code: u16) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    /// Top-level status code (Success when absent, as RFC 8415 says).
    pub fn status(&self) -> Status {
        status_of(self.option(OPT_STATUS_CODE))
    }

    /// Every IA of the reply, parsed.
    pub fn ias(&self) -> Vec<ParsedIa> {
        self.options
            .iter()
            .filter_map(|(c, d)| Ia::parse(*c, d))
            .map(|ia| ParsedIa {
                kind: ia.kind,
                iaid: ia.iaid,
                t1: ia.t1,
                t2: ia.t2,
                status: status_of(ia.options.get(OPT_STATUS_CODE)),
                addrs: ia.addrs().map(|a| (a.addr, a.preferred, a.valid)).collect(),
                prefixes: ia
                    .prefixes()
                    .map(|p| (p.prefix, p.prefix_len, p.preferred, p.valid))
                    .collect(),
                prefix_options: ia
                    .prefixes()
                    .map(|p| p.options.iter().map(|(c, d)| (c, d.to_vec())).collect())
                    .collect(),
            })
            .collect()
    }
}

fn status_of(d: Option<&[u8]>) -> Status {
    match d {
        Some(d) if d.len() >= 2 => Status::from_u16(be16(d, 0)).unwrap_or(Status::UnspecFail),
        _ => Status::Success,
    }
}

/// An IA of a parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedIa {
    pub kind: IaKind,
    pub iaid: u32,
    pub t1: u32,
    pub t2: u32,
    pub status: Status,
    /// (address, preferred, valid)
    pub addrs: Vec<(Ipv6Addr, u32, u32)>,
    /// (prefix, length, preferred, valid)
    pub prefixes: Vec<(Ipv6Addr, u8, u32, u32)>,
    /// Sub-options of each IAPREFIX (e.g. PD-exclude), in the order of `prefixes`.
    pub prefix_options: Vec<Vec<(u16, Vec<u8>)>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn solicit() -> Vec<u8> {
        RequestBuilder6::new(MessageType6::Solicit, 0x123456)
            .client_id(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1])
            .elapsed(0)
            .oro(&[23, 24])
            .ia_na(7, &[(a("2001:db8::5"), 100, 200)])
            .ia_pd(8, &[(a("2001:db8:8000::"), 56, 0, 0)])
            .rapid_commit()
            .build()
    }

    #[test]
    fn parses_client_message_and_ias() {
        let pkt = solicit();
        let v = Dhcp6View::parse(&pkt).unwrap();
        assert_eq!(v.msg_type(), Ok(MessageType6::Solicit));
        assert_eq!(v.xid(), [0x12, 0x34, 0x56]);
        assert_eq!(v.client_id(), Some(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1][..]));
        assert!(v.rapid_commit());
        assert_eq!(v.oro().collect::<Vec<_>>(), vec![23, 24]);
        let ias: Vec<_> = v.ias().collect();
        assert_eq!(ias.len(), 2);
        assert_eq!((ias[0].kind, ias[0].iaid), (IaKind::Na, 7));
        let ad: Vec<_> = ias[0].addrs().collect();
        assert_eq!(
            (ad[0].addr, ad[0].preferred, ad[0].valid),
            (a("2001:db8::5"), 100, 200)
        );
        let p: Vec<_> = ias[1].prefixes().collect();
        assert_eq!((p[0].prefix, p[0].prefix_len), (a("2001:db8:8000::"), 56));
        assert!(!v.is_relayed());
    }

    #[test]
    fn unwraps_nested_relays_and_finds_interface_id() {
        let inner = solicit();
        let r1 = RequestBuilder6::relay_forw(
            &inner,
            0,
            a("2001:db8:1::1"),
            a("fe80::1"),
            Some(b"eth-inner"),
            &[],
        );
        let r2 =
            RequestBuilder6::relay_forw(&r1, 1, a("::"), a("2001:db8:1::1"), Some(b"outer"), &[]);
        let v = Dhcp6View::parse(&r2).unwrap();
        assert_eq!(v.relay_count(), 2);
        assert_eq!(v.relay(0).unwrap().hop_count, 1);
        assert_eq!(v.innermost_relay().unwrap().link_addr, a("2001:db8:1::1"));
        assert_eq!(v.interface_id(), Some(&b"eth-inner"[..]));
        assert_eq!(v.msg_type(), Ok(MessageType6::Solicit));
        assert_eq!(v.ias().count(), 2);
    }

    #[test]
    fn relay_depth_is_bounded() {
        let mut m = solicit();
        for i in 0..MAX_RELAYS {
            m = RequestBuilder6::relay_forw(&m, i as u8, a("::"), a("::"), None, &[]);
        }
        assert!(Dhcp6View::parse(&m).is_ok());
        m = RequestBuilder6::relay_forw(&m, 40, a("::"), a("::"), None, &[]);
        assert_eq!(Dhcp6View::parse(&m).err(), Some(DropReason::BadOptions));
    }

    #[test]
    fn truncations_and_corruptions_never_panic() {
        let inner = solicit();
        let pkt =
            RequestBuilder6::relay_forw(&inner, 0, a("2001:db8::1"), a("fe80::2"), Some(b"x"), &[]);
        for n in 0..pkt.len() {
            let _ = Dhcp6View::parse(&pkt[..n]).map(|v| v.ias().count());
        }
        for i in 0..pkt.len() {
            let mut p = pkt.clone();
            p[i] ^= 0xff;
            if let Ok(v) = Dhcp6View::parse(&p) {
                for ia in v.ias() {
                    let _ = ia.addrs().count() + ia.prefixes().count();
                }
            }
        }
        // IA_NA shorter than its fixed part is rejected.
        let bad = RequestBuilder6::new(MessageType6::Request, 1)
            .option(OPT_IA_NA, &[0, 0, 0, 1])
            .build();
        assert_eq!(Dhcp6View::parse(&bad).err(), Some(DropReason::BadOptions));
        // Relay without a relay message.
        let bad = RequestBuilder6::relay_forw(&[], 0, a("::"), a("::"), None, &[]);
        assert!(Dhcp6View::parse(&bad[..bad.len() - 4]).is_err());
    }

    #[test]
    fn writer_nests_and_back_patches() {
        let mut buf = [0u8; 512];
        let mut w = Dhcp6Writer::new(&mut buf);
        w.relay_repl_header(0, a("2001:db8::1"), a("fe80::2"));
        w.option(OPT_INTERFACE_ID, b"if0");
        w.begin(OPT_RELAY_MSG);
        w.message_header(MessageType6::Reply, [1, 2, 3]);
        w.option(OPT_SERVERID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]);
        w.begin_ia(IaKind::Na, 9, 50, 80);
        w.begin_iaaddr(a("2001:db8::10"), 100, 200);
        w.end();
        w.status(Status::Success, "ok");
        w.end();
        w.begin_ia(IaKind::Pd, 10, 0, 0);
        w.begin_iaprefix(a("2001:db8:100::"), 56, 10, 20);
        w.end();
        w.end();
        w.end();
        let n = w.finish().unwrap();
        let r = ParsedReply::parse(&buf[..n]).unwrap();
        assert_eq!(r.relays.len(), 1);
        assert_eq!(r.relays[0].3.as_deref(), Some(&b"if0"[..]));
        assert_eq!(r.msg_type, 7);
        let ias = r.ias();
        assert_eq!(ias[0].addrs, vec![(a("2001:db8::10"), 100, 200)]);
        assert_eq!(
            (ias[0].t1, ias[0].t2, ias[0].status),
            (50, 80, Status::Success)
        );
        assert_eq!(ias[1].prefixes, vec![(a("2001:db8:100::"), 56, 10, 20)]);
    }

    #[test]
    fn writer_overflow_and_unbalanced_are_reported() {
        let mut tiny = [0u8; 10];
        let mut w = Dhcp6Writer::new(&mut tiny);
        w.message_header(MessageType6::Reply, [0; 3]);
        w.option(OPT_SERVERID, &[0; 20]);
        assert_eq!(w.finish(), None);
        let mut buf = [0u8; 64];
        let mut w = Dhcp6Writer::new(&mut buf);
        w.begin(OPT_IA_NA);
        assert_eq!(w.finish(), None);
    }
}
