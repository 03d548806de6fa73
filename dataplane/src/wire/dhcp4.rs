//! DHCPv4 (RFC 2131/2132) message view and writer, zero-copy and allocation-free.
//!
//! [`Dhcp4View::parse`] validates the fixed header and indexes the options once (including option
//! overload into `file`/`sname`, RFC 2132 §9.3, and options split across several instances, RFC
//! 3396, which are concatenated into a caller-owned scratch buffer). Accessors then return slices.
//! [`Dhcp4Writer`] writes a reply field by field into a buffer the caller owns (a UMEM frame).

use super::DropReason;
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
pub const FIXED_LEN: usize = 236;
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// RFC 2131: minimum BOOTP message length; replies are padded to it for old clients and relays.
pub const MIN_REPLY_LEN: usize = 300;

pub const OPT_PAD: u8 = 0;
pub const OPT_SUBNET_MASK: u8 = 1;
pub const OPT_ROUTERS: u8 = 3;
pub const OPT_DNS: u8 = 6;
pub const OPT_HOSTNAME: u8 = 12;
pub const OPT_DOMAIN_NAME: u8 = 15;
pub const OPT_REQUESTED_IP: u8 = 50;
pub const OPT_LEASE_TIME: u8 = 51;
pub const OPT_OVERLOAD: u8 = 52;
pub const OPT_MSG_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_PRL: u8 = 55;
pub const OPT_MESSAGE: u8 = 56;
pub const OPT_MAX_SIZE: u8 = 57;
pub const OPT_T1: u8 = 58;
pub const OPT_T2: u8 = 59;
pub const OPT_CLIENT_ID: u8 = 61;
pub const OPT_RELAY_AGENT: u8 = 82;
pub const OPT_SUBNET_SELECTION: u8 = 118;
pub const OPT_END: u8 = 255;

pub const FLAG_BROADCAST: u16 = 0x8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// Where one option's payload lives: in the packet, or (for split options) in the scratch buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OptLoc {
    start: u16,
    len: u16,
    in_scratch: bool,
    present: bool,
}

/// Per-worker reusable state for parsing: the option index and the concatenation buffer.
pub struct Dhcp4Scratch {
    index: [OptLoc; 256],
    present: [u64; 4],
    concat: [u8; 1024],
    concat_len: usize,
}

impl Default for Dhcp4Scratch {
    fn default() -> Self {
        Dhcp4Scratch {
            index: [OptLoc::default(); 256],
            present: [0; 4],
            concat: [0; 1024],
            concat_len: 0,
        }
    }
}

impl Dhcp4Scratch {
    fn reset(&mut self) {
        // Only clear what the previous packet set: cheaper than zeroing all 256 entries.
        for w in 0..4 {
            let mut bits = self.present[w];
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                self.index[w * 64 + b] = OptLoc::default();
                bits &= bits - 1;
            }
            self.present[w] = 0;
        }
        self.concat_len = 0;
    }
}

/// The checks every reading of a message starts with: the fixed header and the magic cookie are
/// there, and `hlen` fits the 16-byte `chaddr` field.
fn check_fixed(pkt: &[u8]) -> Result<(), DropReason> {
    if pkt.len() < FIXED_LEN + 4 {
        return Err(DropReason::DhcpTooShort);
    }
    if pkt[FIXED_LEN..FIXED_LEN + 4] != MAGIC {
        return Err(DropReason::BadMagicCookie);
    }
    if pkt[2] > 16 {
        return Err(DropReason::BadHardwareAddress);
    }
    Ok(())
}

/// What a request's client key is made of, read without indexing its options: for the prefetch
/// hint, which runs for every frame of a batch before any is handled. Never panics on any input.
/// It may differ from what [`Dhcp4View`] finds (it looks only at the first option 61 in the
/// options field, not at repeats or the overloaded `file`/`sname` fields): a wrong hint only
/// wastes a prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dhcp4KeyHint<'a> {
    pub htype: u8,
    pub chaddr: &'a [u8],
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// The first option 61's payload, if present and not empty.
    pub client_id: Option<&'a [u8]>,
}

impl<'a> Dhcp4KeyHint<'a> {
    /// `None` for anything [`Dhcp4View::parse`] refuses at first sight (the same checks).
    pub fn peek(pkt: &'a [u8]) -> Option<Dhcp4KeyHint<'a>> {
        check_fixed(pkt).ok()?;
        let mut client_id = None;
        let mut i = FIXED_LEN + 4;
        while let Some(&code) = pkt.get(i) {
            match code {
                OPT_PAD => i += 1,
                OPT_END => break,
                _ => {
                    let len = usize::from(*pkt.get(i + 1)?);
                    let body = pkt.get(i + 2..i + 2 + len)?;
                    if code == OPT_CLIENT_ID {
                        client_id = Some(body).filter(|b| !b.is_empty());
                        break;
                    }
                    i += 2 + len;
                }
            }
        }
        Some(Dhcp4KeyHint {
            htype: pkt[1],
            chaddr: &pkt[28..28 + usize::from(pkt[2])],
            ciaddr: ip_at(pkt, 12),
            giaddr: ip_at(pkt, 24),
            client_id,
        })
    }
}

/// A validated DHCPv4 message borrowing the packet bytes.
pub struct Dhcp4View<'a> {
    pkt: &'a [u8],
    scratch: &'a Dhcp4Scratch,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl<'a> Dhcp4View<'a> {
    /// Parse and index a DHCPv4 message. Errors name the malformation.
    pub fn parse(
        pkt: &'a [u8],
        scratch: &'a mut Dhcp4Scratch,
    ) -> Result<Dhcp4View<'a>, DropReason> {
        scratch.reset();
        check_fixed(pkt)?;
        let mut overload = 0u8;
        index_options(pkt, FIXED_LEN + 4, pkt.len(), scratch, &mut overload)?;
        // RFC 2132 §9.3: options continue in `file` (1), `sname` (2) or both (3), file first.
        if overload & 1 != 0 {
            let mut ignored = 0;
            index_options(pkt, 108, 236, scratch, &mut ignored)?;
        }
        if overload & 2 != 0 {
            let mut ignored = 0;
            index_options(pkt, 44, 108, scratch, &mut ignored)?;
        }
        Ok(Dhcp4View { pkt, scratch })
    }

    pub fn op(&self) -> u8 {
        self.pkt[0]
    }
    pub fn htype(&self) -> u8 {
        self.pkt[1]
    }
    pub fn hlen(&self) -> u8 {
        self.pkt[2]
    }
    pub fn hops(&self) -> u8 {
        self.pkt[3]
    }
    pub fn xid(&self) -> [u8; 4] {
        [self.pkt[4], self.pkt[5], self.pkt[6], self.pkt[7]]
    }
    pub fn secs(&self) -> u16 {
        be16(self.pkt, 8)
    }
    pub fn flags(&self) -> u16 {
        be16(self.pkt, 10)
    }
    pub fn ciaddr(&self) -> Ipv4Addr {
        ip_at(self.pkt, 12)
    }
    pub fn yiaddr(&self) -> Ipv4Addr {
        ip_at(self.pkt, 16)
    }
    pub fn siaddr(&self) -> Ipv4Addr {
        ip_at(self.pkt, 20)
    }
    pub fn giaddr(&self) -> Ipv4Addr {
        ip_at(self.pkt, 24)
    }
    /// The client hardware address, `hlen` bytes.
    pub fn chaddr(&self) -> &'a [u8] {
        &self.pkt[28..28 + usize::from(self.hlen())]
    }
    /// The full 16-byte chaddr field (echoed verbatim in replies).
    pub fn chaddr_field(&self) -> &'a [u8] {
        &self.pkt[28..44]
    }

    /// An option's payload, or `None` when absent.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        let loc = self.scratch.index[usize::from(code)];
        if !loc.present {
            return None;
        }
        let (s, l) = (usize::from(loc.start), usize::from(loc.len));
        Some(if loc.in_scratch {
            &self.scratch.concat[s..s + l]
        } else {
            &self.pkt[s..s + l]
        })
    }

    pub fn has_option(&self, code: u8) -> bool {
        self.scratch.index[usize::from(code)].present
    }

    pub fn message_type(&self) -> Result<MessageType, DropReason> {
        match self.option(OPT_MSG_TYPE) {
            Some([t]) => MessageType::from_u8(*t).ok_or(DropReason::UnknownMessageType),
            Some(_) => Err(DropReason::BadOptions),
            None => Err(DropReason::MissingMessageType),
        }
    }

    pub fn option_ipv4(&self, code: u8) -> Option<Ipv4Addr> {
        match self.option(code) {
            Some(b) if b.len() == 4 => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            _ => None,
        }
    }

    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.option_ipv4(OPT_REQUESTED_IP)
    }
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option_ipv4(OPT_SERVER_ID)
    }
    /// Option 61 payload, if present and non-empty.
    pub fn client_id(&self) -> Option<&[u8]> {
        self.option(OPT_CLIENT_ID).filter(|c| !c.is_empty())
    }
    pub fn parameter_request_list(&self) -> &[u8] {
        self.option(OPT_PRL).unwrap_or(&[])
    }

    /// A sub-option of the relay agent information option (82).
    pub fn relay_suboption(&self, sub: u8) -> Option<&[u8]> {
        let mut data = self.option(OPT_RELAY_AGENT)?;
        while data.len() >= 2 {
            let (code, len) = (data[0], usize::from(data[1]));
            if data.len() < 2 + len {
                return None;
            }
            if code == sub {
                return Some(&data[2..2 + len]);
            }
            data = &data[2 + len..];
        }
        None
    }
}

fn index_options(
    pkt: &[u8],
    mut i: usize,
    end: usize,
    s: &mut Dhcp4Scratch,
    overload: &mut u8,
) -> Result<(), DropReason> {
    while i < end {
        let code = pkt[i];
        if code == OPT_PAD {
            i += 1;
            continue;
        }
        if code == OPT_END {
            return Ok(());
        }
        if i + 1 >= end {
            return Err(DropReason::BadOptions);
        }
        let len = usize::from(pkt[i + 1]);
        let start = i + 2;
        if start + len > end {
            return Err(DropReason::BadOptions);
        }
        if code == OPT_OVERLOAD && len == 1 {
            *overload = pkt[start];
        }
        let c = usize::from(code);
        let loc = s.index[c];
        if !loc.present {
            s.index[c] = OptLoc {
                start: start as u16,
                len: len as u16,
                in_scratch: false,
                present: true,
            };
            s.present[c / 64] |= 1 << (c % 64);
        } else {
            // RFC 3396: a repeated option is the concatenation of its instances.
            let prev_len = usize::from(loc.len);
            let new_start = s.concat_len;
            if new_start + prev_len + len > s.concat.len() {
                return Err(DropReason::BadOptions);
            }
            if loc.in_scratch {
                // The previous part is already the tail of the scratch buffer when it was the last
                // option concatenated; otherwise copy it forward.
                let src = usize::from(loc.start);
                s.concat.copy_within(src..src + prev_len, new_start);
            } else {
                let src = usize::from(loc.start);
                s.concat[new_start..new_start + prev_len]
                    .copy_from_slice(&pkt[src..src + prev_len]);
            }
            s.concat[new_start + prev_len..new_start + prev_len + len]
                .copy_from_slice(&pkt[start..start + len]);
            s.concat_len = new_start + prev_len + len;
            s.index[c] = OptLoc {
                start: new_start as u16,
                len: (prev_len + len) as u16,
                in_scratch: true,
                present: true,
            };
        }
        i = start + len;
    }
    // A missing END option is tolerated (many embedded clients omit it), as Kea does.
    Ok(())
}

/// Writes a DHCPv4 reply into a caller-owned buffer. Running out of room sets `overflow` instead
/// of panicking; the caller checks [`Dhcp4Writer::finish`].
pub struct Dhcp4Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Dhcp4Writer<'a> {
    /// Start a BOOTREPLY echoing the request's htype, hlen, xid, flags, giaddr and chaddr.
    pub fn reply_to(buf: &'a mut [u8], req: &Dhcp4View<'_>) -> Dhcp4Writer<'a> {
        let mut w = Dhcp4Writer {
            buf,
            pos: 0,
            overflow: false,
        };
        if w.buf.len() < FIXED_LEN + 4 {
            w.overflow = true;
            return w;
        }
        let b = &mut w.buf[..FIXED_LEN + 4];
        b.fill(0);
        b[0] = 2;
        b[1] = req.htype();
        b[2] = req.hlen();
        b[3] = 0;
        b[4..8].copy_from_slice(&req.xid());
        b[10..12].copy_from_slice(&req.flags().to_be_bytes());
        b[24..28].copy_from_slice(&req.giaddr().octets());
        b[28..44].copy_from_slice(req.chaddr_field());
        b[FIXED_LEN..FIXED_LEN + 4].copy_from_slice(&MAGIC);
        w.pos = FIXED_LEN + 4;
        w
    }

    pub fn set_ciaddr(&mut self, a: Ipv4Addr) {
        if !self.overflow {
            self.buf[12..16].copy_from_slice(&a.octets());
        }
    }
    pub fn set_yiaddr(&mut self, a: Ipv4Addr) {
        if !self.overflow {
            self.buf[16..20].copy_from_slice(&a.octets());
        }
    }
    pub fn set_siaddr(&mut self, a: Ipv4Addr) {
        if !self.overflow {
            self.buf[20..24].copy_from_slice(&a.octets());
        }
    }
    pub fn set_sname(&mut self, s: &[u8]) {
        if !self.overflow {
            let n = s.len().min(63);
            self.buf[44..44 + n].copy_from_slice(&s[..n]);
        }
    }
    pub fn set_file(&mut self, s: &[u8]) {
        if !self.overflow {
            let n = s.len().min(127);
            self.buf[108..108 + n].copy_from_slice(&s[..n]);
        }
    }

    /// Append one option; payloads over 255 bytes are split into several instances (RFC 3396).
    pub fn option(&mut self, code: u8, data: &[u8]) {
        let mut chunks = data.chunks(255);
        let first = chunks.next().unwrap_or(&[]);
        self.raw_option(code, first);
        for c in chunks {
            self.raw_option(code, c);
        }
    }

    fn raw_option(&mut self, code: u8, data: &[u8]) {
        let need = 2 + data.len();
        // Keep one byte for END.
        if self.overflow || self.pos + need + 1 > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.pos] = code;
        self.buf[self.pos + 1] = data.len() as u8;
        self.buf[self.pos + 2..self.pos + need].copy_from_slice(data);
        self.pos += need;
    }

    pub fn option_u32(&mut self, code: u8, v: u32) {
        self.option(code, &v.to_be_bytes());
    }
    pub fn option_ipv4(&mut self, code: u8, a: Ipv4Addr) {
        self.option(code, &a.octets());
    }

    /// Copy pre-encoded option bytes (code, len, payload …) verbatim.
    pub fn raw(&mut self, encoded: &[u8]) {
        if self.overflow || self.pos + encoded.len() + 1 > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.pos..self.pos + encoded.len()].copy_from_slice(encoded);
        self.pos += encoded.len();
    }

    /// Bytes still available for options (END excluded).
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos + 1)
    }

    /// Terminate with END and pad to the BOOTP minimum. `None` if the reply did not fit.
    pub fn finish(self) -> Option<usize> {
        if self.overflow || self.pos + 1 > self.buf.len() {
            return None;
        }
        self.buf[self.pos] = OPT_END;
        let mut len = self.pos + 1;
        if len < MIN_REPLY_LEN && self.buf.len() >= MIN_REPLY_LEN {
            self.buf[len..MIN_REPLY_LEN].fill(0);
            len = MIN_REPLY_LEN;
        }
        Some(len)
    }
}

/// Build a client request (used by tests, the load generator and fuzzing seeds).
pub struct RequestBuilder {
    pub buf: Vec<u8>,
}

impl RequestBuilder {
    pub fn new(msg: MessageType, xid: u32, mac: [u8; 6]) -> Self {
        let mut buf = vec![0u8; FIXED_LEN + 4];
        buf[0] = 1;
        buf[1] = 1;
        buf[2] = 6;
        buf[4..8].copy_from_slice(&xid.to_be_bytes());
        buf[28..34].copy_from_slice(&mac);
        buf[FIXED_LEN..FIXED_LEN + 4].copy_from_slice(&MAGIC);
        buf.extend_from_slice(&[OPT_MSG_TYPE, 1, msg as u8]);
        RequestBuilder { buf }
    }
    pub fn ciaddr(mut self, a: Ipv4Addr) -> Self {
        self.buf[12..16].copy_from_slice(&a.octets());
        self
    }
    pub fn giaddr(mut self, a: Ipv4Addr) -> Self {
        self.buf[24..28].copy_from_slice(&a.octets());
        self.buf[3] = 1;
        self
    }
    pub fn flags(mut self, f: u16) -> Self {
        self.buf[10..12].copy_from_slice(&f.to_be_bytes());
        self
    }
    pub fn secs(mut self, s: u16) -> Self {
        self.buf[8..10].copy_from_slice(&s.to_be_bytes());
        self
    }
    pub fn option(mut self, code: u8, data: &[u8]) -> Self {
        self.buf.push(code);
        self.buf.push(data.len() as u8);
        self.buf.extend_from_slice(data);
        self
    }
    pub fn build(mut self) -> Vec<u8> {
        self.buf.push(OPT_END);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_concatenates_split_ones() {
        let pkt = RequestBuilder::new(MessageType::Discover, 7, [1, 2, 3, 4, 5, 6])
            .option(OPT_CLIENT_ID, &[1, 1, 2])
            .option(OPT_PRL, &[1, 3])
            .option(OPT_CLIENT_ID, &[3, 4, 5, 6])
            .build();
        let mut s = Dhcp4Scratch::default();
        let v = Dhcp4View::parse(&pkt, &mut s).unwrap();
        assert_eq!(v.message_type(), Ok(MessageType::Discover));
        assert_eq!(v.client_id(), Some(&[1, 1, 2, 3, 4, 5, 6][..]));
        assert_eq!(v.parameter_request_list(), &[1, 3]);
        assert_eq!(v.chaddr(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(u32::from_be_bytes(v.xid()), 7);
    }

    #[test]
    fn overload_reads_options_from_file_field() {
        let mut pkt = RequestBuilder::new(MessageType::Request, 1, [0; 6])
            .option(OPT_OVERLOAD, &[1])
            .build();
        pkt[108..114].copy_from_slice(&[OPT_REQUESTED_IP, 4, 10, 0, 0, 9]);
        pkt[114] = OPT_END;
        let mut s = Dhcp4Scratch::default();
        let v = Dhcp4View::parse(&pkt, &mut s).unwrap();
        assert_eq!(v.requested_ip(), Some(Ipv4Addr::new(10, 0, 0, 9)));
    }

    #[test]
    fn malformed_messages_are_rejected_without_panic() {
        let good = RequestBuilder::new(MessageType::Discover, 7, [1; 6])
            .option(OPT_PRL, &[1, 3, 6])
            .build();
        let mut s = Dhcp4Scratch::default();
        for n in 0..good.len() {
            let _ = Dhcp4View::parse(&good[..n], &mut s).map(|v| v.message_type());
        }
        let mut bad = good.clone();
        bad[FIXED_LEN] = 0;
        assert_eq!(
            Dhcp4View::parse(&bad, &mut s).err(),
            Some(DropReason::BadMagicCookie)
        );
        let mut bad = good.clone();
        let l = bad.len();
        bad[l - 5] = 200; // PRL length runs past the end
        assert_eq!(
            Dhcp4View::parse(&bad, &mut s).err(),
            Some(DropReason::BadOptions)
        );
    }

    #[test]
    fn key_hint_reads_what_the_view_reads_and_never_panics() {
        let with_id = RequestBuilder::new(MessageType::Request, 7, [1, 2, 3, 4, 5, 6])
            .option(OPT_PRL, &[1, 3, 6])
            .option(OPT_CLIENT_ID, &[1, 1, 2, 3])
            .build();
        let without = RequestBuilder::new(MessageType::Discover, 8, [9; 6])
            .option(OPT_PRL, &[1, 3])
            .build();
        let mut s = Dhcp4Scratch::default();
        for pkt in [&with_id, &without] {
            let hint = Dhcp4KeyHint::peek(pkt).expect("a well-formed request");
            let v = Dhcp4View::parse(pkt, &mut s).unwrap();
            assert_eq!(hint.htype, v.htype());
            assert_eq!(hint.chaddr, v.chaddr());
            assert_eq!(hint.ciaddr, v.ciaddr());
            assert_eq!(hint.giaddr, v.giaddr());
            assert_eq!(hint.client_id, v.client_id());
        }
        assert_eq!(
            Dhcp4KeyHint::peek(&with_id).unwrap().client_id,
            Some(&[1, 1, 2, 3][..])
        );
        // What the view refuses at first sight, the hint refuses too.
        let mut bad = with_id.clone();
        bad[FIXED_LEN] = 0;
        assert_eq!(Dhcp4KeyHint::peek(&bad), None);
        let mut bad = with_id.clone();
        bad[2] = 17;
        assert_eq!(Dhcp4KeyHint::peek(&bad), None);
        // Every truncation, and an option length running past the end: no panic, and no client
        // id read out of bounds.
        for n in 0..with_id.len() {
            let _ = Dhcp4KeyHint::peek(&with_id[..n]);
        }
        let mut bad = with_id.clone();
        let l = bad.len();
        bad[l - 5] = 200;
        let _ = Dhcp4KeyHint::peek(&bad);
    }

    #[test]
    fn writer_splits_long_options_and_pads() {
        let req = RequestBuilder::new(MessageType::Discover, 9, [1; 6]).build();
        let mut s = Dhcp4Scratch::default();
        let v = Dhcp4View::parse(&req, &mut s).unwrap();
        let mut out = [0u8; 1500];
        let mut w = Dhcp4Writer::reply_to(&mut out, &v);
        w.option(OPT_DOMAIN_NAME, &[b'a'; 300]);
        let n = w.finish().unwrap();
        let mut s2 = Dhcp4Scratch::default();
        let mut reply = out[..n].to_vec();
        reply[0] = 1; // parse as request for the check
        let r = Dhcp4View::parse(&reply, &mut s2).unwrap();
        assert_eq!(r.option(OPT_DOMAIN_NAME).unwrap().len(), 300);
        assert_eq!(u32::from_be_bytes(r.xid()), 9);
        let mut tiny = [0u8; 250];
        let mut w = Dhcp4Writer::reply_to(&mut tiny, &v);
        w.option(OPT_DOMAIN_NAME, &[b'a'; 100]);
        assert_eq!(w.finish(), None);
    }
}
