//! DHCPv4 message handling (RFC 2131): DISCOVER → OFFER; REQUEST in the selecting, init-reboot,
//! renewing and rebinding states → ACK or NAK; RELEASE; DECLINE; INFORM. Reply addressing per
//! RFC 2131 §4.1, relay agent information echoed (RFC 3046), options merged from reservation,
//! class, pool, subnet, shared network and global scopes and filtered by the parameter request list.

use super::classes::Classes;
use super::options::Opts4;
use super::runtime4::{Runtime4, SubnetRt4};
use super::Worker;
use crate::backend::{Now, RxContext};
use crate::lease::store::{ClaimError, ClientKey};
use crate::lease::{HwAddr, IdBuf, Lease4, LeaseChange, LeaseState};
use crate::wire::dhcp4::*;
use crate::wire::frame::{
    payload_offset_v4, write_udp4_headers, Udp4Reply, UdpFrame, BROADCAST_MAC,
};
use crate::wire::DropReason;
use smallvec::SmallVec;
use std::net::Ipv4Addr;
use xdhcp_config::classify::ClassifyInput;
use xdhcp_config::model::{PktField, Reservation4};

/// Which kind of positive reply is being built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Offer,
    Ack,
    InformAck,
}

struct PacketInput<'a, 'b> {
    msg: &'a Dhcp4View<'b>,
    ifname: &'a str,
}

impl ClassifyInput for PacketInput<'_, '_> {
    fn option(&self, code: u16) -> Option<&[u8]> {
        u8::try_from(code).ok().and_then(|c| self.msg.option(c))
    }
    fn relay4_suboption(&self, sub: u8) -> Option<&[u8]> {
        self.msg.relay_suboption(sub)
    }
    fn pkt_field(&self, f: PktField) -> Vec<u8> {
        let m = self.msg;
        match f {
            PktField::Mac => m.chaddr().to_vec(),
            PktField::Hlen => u32::from(m.hlen()).to_be_bytes().to_vec(),
            PktField::Htype => u32::from(m.htype()).to_be_bytes().to_vec(),
            PktField::Ciaddr => m.ciaddr().octets().to_vec(),
            PktField::Giaddr => m.giaddr().octets().to_vec(),
            PktField::Yiaddr => m.yiaddr().octets().to_vec(),
            PktField::Siaddr => m.siaddr().octets().to_vec(),
            PktField::MsgType4 => u32::from(m.message_type().map(|t| t as u8).unwrap_or(0))
                .to_be_bytes()
                .to_vec(),
            PktField::TransId4 => m.xid().to_vec(),
            PktField::Iface => self.ifname.as_bytes().to_vec(),
            PktField::MsgType6 | PktField::TransId6 => Vec::new(),
        }
    }
}

/// Everything derived from the request that the handlers share.
struct Ctx<'a> {
    rt: &'a Runtime4,
    si: usize,
    hw: HwAddr,
    server_id: Ipv4Addr,
    classes: Classes,
    res: Option<&'a Reservation4>,
    now: u64,
}

impl Ctx<'_> {
    fn subnet(&self) -> &SubnetRt4 {
        &self.rt.subnets[self.si]
    }
    /// The subnets the client may use, in order: the selected one, then the rest of its shared
    /// network, each only if its `client-class` admits the client.
    fn candidates(&self) -> impl Iterator<Item = usize> + '_ {
        self.subnet().candidates.iter().copied().filter(|&si| {
            let guard = self.rt.subnets[si].cfg.client_class.as_deref();
            self.rt.classes.allows(&self.classes, guard)
        })
    }
    /// The subnet, among those the client may use (its shared network), that contains `addr`.
    fn candidate_containing(&self, addr: Ipv4Addr) -> Option<usize> {
        self.candidates()
            .find(|&si| self.rt.subnets[si].cfg.contains(addr))
    }
    fn key(&self, si: usize, msg: &Dhcp4View<'_>) -> ClientKey {
        let s = &self.rt.subnets[si].cfg;
        ClientKey::v4(s.id, &self.hw, msg.client_id(), s.match_client_id)
    }
    /// Valid lifetime: the client's hint clamped to [min, max]; the class or default otherwise.
    fn valid_lft(&self, si: usize, msg: &Dhcp4View<'_>) -> u32 {
        let lt = &self.rt.subnets[si].cfg.lifetimes;
        let class_lft = self
            .rt
            .classes
            .of(&self.classes)
            .find_map(|k| k.valid_lifetime);
        match msg.option(OPT_LEASE_TIME) {
            Some(b) if b.len() == 4 => u32::from_be_bytes([b[0], b[1], b[2], b[3]])
                .clamp(lt.min_valid, lt.max_valid.max(lt.min_valid)),
            _ => class_lft.unwrap_or(lt.valid),
        }
    }
    fn pool_allowed(&self, class: &Option<String>) -> bool {
        self.rt.classes.allows(&self.classes, class.as_deref())
    }
    /// Is `a` an address this client may hold in subnet `si`: in a permitted pool or reserved
    /// for it, and not reserved for somebody else.
    fn address_ok(&self, si: usize, a: Ipv4Addr) -> bool {
        let s = &self.rt.subnets[si];
        if !s.cfg.contains(a) {
            return false;
        }
        if let Some(r) = self.res {
            if r.ip_address == Some(a) {
                return true;
            }
        }
        if self.rt.reserved_for_other(si, a, self.res) {
            return false;
        }
        s.pool_of(a)
            .is_some_and(|p| self.pool_allowed(&p.client_class))
    }
    fn new_lease(
        &self,
        si: usize,
        addr: Ipv4Addr,
        msg: &Dhcp4View<'_>,
        state: LeaseState,
        valid: u32,
    ) -> Lease4 {
        Lease4 {
            addr,
            hwaddr: self.hw,
            client_id: msg.client_id().map(IdBuf::from_slice).unwrap_or_default(),
            subnet_id: self.rt.subnets[si].cfg.id,
            cltt: self.now,
            valid_lft: valid,
            state,
            fqdn_fwd: false,
            fqdn_rev: false,
            hostname: None,
        }
    }
}

pub(super) fn handle(
    w: &mut Worker,
    now: Now,
    ctx: &RxContext,
    f: &UdpFrame,
    rx: &[u8],
    tx: &mut [u8],
) -> Option<usize> {
    let Worker {
        shared,
        scratch4,
        stats,
        sink,
        index,
        ..
    } = w;
    let Some(rt) = shared.rt4.as_ref() else {
        stats.dropped(DropReason::Unsupported);
        return None;
    };
    let payload = &rx[f.payload_start..f.payload_end];
    let msg = match Dhcp4View::parse(payload, scratch4) {
        Ok(m) => m,
        Err(r) => {
            stats.received4(0);
            stats.dropped(r);
            return None;
        }
    };
    // Kea's pkt4-<type>-received; index 0 counts what has no valid message type.
    stats.received4(msg.message_type().map_or(0, |t| t as u8));
    let result = handle_msg(rt, shared, *index, sink.as_ref(), now, ctx, f, &msg, tx);
    match result {
        Ok(Some((len, t))) => {
            stats.sent4(t);
            Some(len)
        }
        Ok(None) => None,
        Err(r) => {
            stats.dropped(r);
            None
        }
    }
}

/// [`FrameHandler::prefetch`](crate::backend::FrameHandler::prefetch) for DHCPv4: guesses the
/// client's key the way [`handle_msg`] will find it in the common case (subnet selected by relay
/// or interface, before classification) and prefetches its client-index bucket. A wrong guess
/// (a class steering the client elsewhere in a shared network) only wastes the prefetch. It
/// reads the request with [`Dhcp4KeyHint::peek`] rather than the full parse: the handler parses
/// every request anyway, and indexing all its options a second time here cost ~2% of the
/// worker's core.
pub(super) fn prefetch(w: &mut Worker, ctx: &RxContext, f: &UdpFrame, rx: &[u8]) {
    let Some(rt) = w.shared.rt4.as_ref() else {
        return;
    };
    let Some(msg) = rx
        .get(f.payload_start..f.payload_end)
        .and_then(Dhcp4KeyHint::peek)
    else {
        return;
    };
    let ifname = w.shared.ifname(ctx.ifindex);
    let Some(si) = rt.select_subnet(None, msg.giaddr, msg.ciaddr, Some(ifname), ctx.if_ipv4) else {
        return;
    };
    let s = &rt.subnets[si].cfg;
    let hw = HwAddr::new(msg.htype, msg.chaddr);
    w.shared
        .store
        .prefetch_client4(&ClientKey::v4(s.id, &hw, msg.client_id, s.match_client_id));
}

#[allow(clippy::too_many_arguments)]
fn handle_msg(
    rt: &Runtime4,
    shared: &super::Shared,
    worker: usize,
    sink: &dyn super::LeaseSink,
    now: Now,
    rxc: &RxContext,
    f: &UdpFrame,
    msg: &Dhcp4View<'_>,
    tx: &mut [u8],
) -> Result<Option<(usize, u8)>, DropReason> {
    if msg.op() != 1 {
        return Err(DropReason::NotBootRequest);
    }
    let mt = msg.message_type()?;
    if msg.hlen() == 0 && msg.client_id().is_none() {
        // Neither a hardware address nor a client identifier: nothing to key a lease on.
        return Err(DropReason::BadHardwareAddress);
    }
    let ifname = shared.ifname(rxc.ifindex);
    let selection = msg.option_ipv4(OPT_SUBNET_SELECTION).or_else(|| {
        msg.relay_suboption(5)
            .filter(|b| b.len() == 4)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    });
    let si = rt
        .select_subnet(
            selection,
            msg.giaddr(),
            msg.ciaddr(),
            Some(ifname),
            rxc.if_ipv4,
        )
        .ok_or(DropReason::NoSubnet)?;
    // Classes with tests are decided before the subnet (Kea's order), so a subnet's
    // `client-class` can steer the client to another subnet of the shared network.
    let mut classes = rt.classes.classify(&PacketInput { msg, ifname });
    let si = rt.subnets[si]
        .candidates
        .iter()
        .copied()
        .find(|&s| {
            let guard = rt.subnets[s].cfg.client_class.as_deref();
            rt.classes.allows(&classes, guard)
        })
        .ok_or(DropReason::NoSubnet)?;
    let subnet = &rt.subnets[si];
    let balanced = matches!(
        mt,
        MessageType::Discover
            | MessageType::Request
            | MessageType::Decline
            | MessageType::Release
            | MessageType::Inform
    );
    let lb_key = msg.client_id().unwrap_or(msg.chaddr());
    if !shared
        .gate4
        .serve(subnet.cfg.id, lb_key, balanced, msg.secs())
    {
        return Err(DropReason::NotServing);
    }
    let hw = HwAddr::new(msg.htype(), msg.chaddr());
    let res = rt.reservation(si, msg.chaddr(), msg.client_id());
    if let Some(r) = res {
        rt.classes.add_reserved(&mut classes, &r.client_classes);
    }
    let server_id = subnet
        .opts
        .payload(OPT_SERVER_ID)
        .filter(|b| b.len() == 4)
        .map_or(rxc.if_ipv4, |b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    let c = Ctx {
        rt,
        si,
        hw,
        server_id,
        classes,
        res,
        now: now.unix_secs,
    };
    match mt {
        MessageType::Discover => discover(&c, shared, worker, msg, rxc, f, tx),
        MessageType::Request => request(&c, shared, sink, msg, rxc, f, tx),
        MessageType::Release => release(&c, shared, sink, msg).map(|_| None),
        MessageType::Decline => decline(&c, shared, sink, msg).map(|_| None),
        MessageType::Inform => inform(&c, msg, rxc, f, tx),
        MessageType::Offer | MessageType::Ack | MessageType::Nak => {
            Err(DropReason::UnknownMessageType)
        }
    }
}

fn existing_lease(
    c: &Ctx<'_>,
    shared: &super::Shared,
    msg: &Dhcp4View<'_>,
) -> Option<(usize, Lease4)> {
    c.candidates().find_map(|si| {
        let l = shared.store.get_by_client4(&c.key(si, msg))?;
        (l.state != LeaseState::Declined).then_some((si, l))
    })
}

fn discover(
    c: &Ctx<'_>,
    shared: &super::Shared,
    worker: usize,
    msg: &Dhcp4View<'_>,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
) -> Result<Option<(usize, u8)>, DropReason> {
    let store = &shared.store;
    let hold = c.rt.cfg.tuning.offer_hold_secs.max(1);
    // 1. The client's current lease (active or reclaimed: address affinity).
    let mut chosen: Option<(usize, Lease4)> = None;
    if let Some((si, l)) = existing_lease(c, shared, msg) {
        if c.address_ok(si, l.addr) {
            if l.is_active(c.now) {
                chosen = Some((si, l));
            } else {
                let offer = c.new_lease(si, l.addr, msg, LeaseState::Offered, hold);
                if store.claim4(&c.key(si, msg), offer.clone(), c.now).is_ok() {
                    chosen = Some((si, offer));
                }
            }
        }
    }
    // 2. A reserved address, 3. the requested address.
    let candidates = [c.res.and_then(|r| r.ip_address), msg.requested_ip()];
    for a in candidates.into_iter().flatten() {
        if chosen.is_some() {
            break;
        }
        if let Some(si) = c.candidates().find(|&si| c.address_ok(si, a)) {
            let offer = c.new_lease(si, a, msg, LeaseState::Offered, hold);
            if store.claim4(&c.key(si, msg), offer.clone(), c.now).is_ok() {
                chosen = Some((si, offer));
            }
        }
    }
    // 4. A free address from the pools the client may use, subnet by subnet.
    if chosen.is_none() {
        for si in c.candidates() {
            let s = &c.rt.subnets[si];
            let mut pools: SmallVec<[usize; 8]> = SmallVec::new();
            for p in &s.pools {
                if c.pool_allowed(&p.client_class) {
                    pools.push(p.store_index);
                }
            }
            let key = c.key(si, msg);
            // Addresses reserved for other clients inside the pools are skipped (Kea's
            // in-pool reservations) and stay free for their owners.
            let make = |a: Ipv4Addr| {
                (!c.rt.reserved_for_other(si, a, c.res))
                    .then(|| c.new_lease(si, a, msg, LeaseState::Offered, hold))
            };
            match store.allocate4(&key, &pools, worker, &make, c.now) {
                Ok(l) => {
                    chosen = Some((si, l));
                    break;
                }
                Err(ClaimError::PoolsExhausted | ClaimError::InUse) => continue,
            }
        }
    }
    let Some((si, lease)) = chosen else {
        return Err(DropReason::NoAddressAvailable);
    };
    let valid = c.valid_lft(si, msg);
    build_reply(
        c,
        si,
        msg,
        rxc,
        f,
        tx,
        MessageType::Offer,
        ReplyKind::Offer,
        lease.addr,
        valid,
    )
}

enum RequestState {
    Selecting(Ipv4Addr),
    InitReboot(Ipv4Addr),
    Renewing(Ipv4Addr),
}

fn request(
    c: &Ctx<'_>,
    shared: &super::Shared,
    sink: &dyn super::LeaseSink,
    msg: &Dhcp4View<'_>,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
) -> Result<Option<(usize, u8)>, DropReason> {
    let store = &shared.store;
    let ciaddr = msg.ciaddr();
    let state = match (msg.server_id(), msg.requested_ip()) {
        (Some(sid), req) => {
            if sid != c.server_id {
                // The client chose another server: free the address we offered it.
                if let Some((_, l)) = existing_lease(c, shared, msg) {
                    if l.state == LeaseState::Offered {
                        store.delete4(l.addr);
                    }
                }
                return Err(DropReason::NotOurServerId);
            }
            match req.or((!ciaddr.is_unspecified()).then_some(ciaddr)) {
                Some(a) => RequestState::Selecting(a),
                None => return nak(c, msg, rxc, f, tx),
            }
        }
        (None, Some(a)) if ciaddr.is_unspecified() => RequestState::InitReboot(a),
        (None, _) if !ciaddr.is_unspecified() => RequestState::Renewing(ciaddr),
        _ => return nak(c, msg, rxc, f, tx),
    };
    let (addr, may_allocate) = match state {
        RequestState::Selecting(a) | RequestState::InitReboot(a) | RequestState::Renewing(a) => {
            (a, true)
        }
    };
    // The subnet the address belongs to must be one the client can use (right network).
    let Some(si) = c.candidate_containing(addr) else {
        return nak(c, msg, rxc, f, tx);
    };
    let key = c.key(si, msg);
    let current = store
        .get_by_client4(&key)
        .filter(|l| l.state != LeaseState::Declined);
    let owns = current.as_ref().is_some_and(|l| l.addr == addr);
    if !owns {
        let known_elsewhere = current.is_some();
        if known_elsewhere || !may_allocate || !c.address_ok(si, addr) {
            let selecting = matches!(state, RequestState::Selecting(_));
            if !known_elsewhere && !selecting && !c.subnet().cfg.authoritative {
                // Kea's non-authoritative behaviour (its default): stay silent rather than NAK a
                // client we have no record of.
                return Err(DropReason::NoLeaseForClient);
            }
            return nak(c, msg, rxc, f, tx);
        }
        // No record of this client at this address. In init-reboot/renewing that happens after a
        // failover or a lost journal tail: take the address if nobody else holds it (DESIGN.md: the
        // survivor renews any lease a client presents); otherwise NAK, or stay silent when not
        // authoritative and we know nothing about the client.
        if let Some(other) = store.get_by_addr4(addr) {
            if !key.matches4(&other) && other.is_active(c.now) {
                if !matches!(state, RequestState::Selecting(_)) && !c.subnet().cfg.authoritative {
                    return Err(DropReason::NoLeaseForClient);
                }
                return nak(c, msg, rxc, f, tx);
            }
        }
    }
    // Never acknowledge what cannot be journaled; the client will retransmit. Two changes when
    // the ACK also releases the client's previous address.
    let moving = current
        .as_ref()
        .is_some_and(|old| old.addr != addr && old.state != LeaseState::Offered);
    if !sink.room_for(if moving { 2 } else { 1 }) {
        return Err(DropReason::JournalFull);
    }
    let valid = c.valid_lft(si, msg);
    let lease = Lease4 {
        hostname: c
            .res
            .and_then(|r| r.hostname.as_deref())
            .map(std::sync::Arc::from),
        ..c.new_lease(si, addr, msg, LeaseState::Assigned, valid)
    };
    let stamp = || sink.take_version();
    match store.claim4_stamped(&key, lease.clone(), c.now, &stamp) {
        Ok((_, version)) => {
            sink.push_versioned(version, LeaseChange::Put4(lease));
        }
        Err(_) => return nak(c, msg, rxc, f, tx),
    }
    // A client holds one address per subnet: a different earlier lease is released.
    if let Some(old) = current {
        if old.addr != addr {
            let released = |l: &mut Lease4| {
                l.state = LeaseState::ExpiredReclaimed;
                l.cltt = c.now;
                l.valid_lft = 0;
            };
            if let Some((l, version)) =
                store.update4_stamped(&key, old.addr, &mut { released }, &stamp)
            {
                if old.state != LeaseState::Offered {
                    let _ = sink.push_versioned(version, LeaseChange::Put4(l));
                }
            }
        }
    }
    build_reply(
        c,
        si,
        msg,
        rxc,
        f,
        tx,
        MessageType::Ack,
        ReplyKind::Ack,
        addr,
        valid,
    )
}

fn release(
    c: &Ctx<'_>,
    shared: &super::Shared,
    sink: &dyn super::LeaseSink,
    msg: &Dhcp4View<'_>,
) -> Result<(), DropReason> {
    let addr = msg.ciaddr();
    let Some(si) = c.candidate_containing(addr) else {
        return Err(DropReason::NoLeaseForClient);
    };
    if !sink.has_room() {
        return Err(DropReason::JournalFull);
    }
    let key = c.key(si, msg);
    let (l, version) = shared
        .store
        .update4_stamped(
            &key,
            addr,
            &mut |l| {
                l.state = LeaseState::ExpiredReclaimed;
                l.cltt = c.now;
                l.valid_lft = 0;
            },
            &|| sink.take_version(),
        )
        .ok_or(DropReason::NoLeaseForClient)?;
    sink.push_versioned(version, LeaseChange::Put4(l));
    Ok(())
}

fn decline(
    c: &Ctx<'_>,
    shared: &super::Shared,
    sink: &dyn super::LeaseSink,
    msg: &Dhcp4View<'_>,
) -> Result<(), DropReason> {
    let addr = msg.requested_ip().ok_or(DropReason::NoLeaseForClient)?;
    let Some(si) = c.candidate_containing(addr) else {
        return Err(DropReason::NoLeaseForClient);
    };
    if !sink.has_room() {
        return Err(DropReason::JournalFull);
    }
    let probation = c.rt.cfg.decline_probation_period_secs;
    let key = c.key(si, msg);
    // The address is held for the probation period, detached from the client (as Kea does), so the
    // client's next DISCOVER gets a different address.
    let (l, version) = shared
        .store
        .update4_stamped(
            &key,
            addr,
            &mut |l| {
                l.state = LeaseState::Declined;
                l.cltt = c.now;
                l.valid_lft = probation;
                l.hwaddr = HwAddr::default();
                l.client_id = IdBuf::new();
                l.hostname = None;
            },
            &|| sink.take_version(),
        )
        .ok_or(DropReason::NoLeaseForClient)?;
    sink.push_versioned(version, LeaseChange::Put4(l));
    Ok(())
}

fn inform(
    c: &Ctx<'_>,
    msg: &Dhcp4View<'_>,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
) -> Result<Option<(usize, u8)>, DropReason> {
    build_reply(
        c,
        c.si,
        msg,
        rxc,
        f,
        tx,
        MessageType::Ack,
        ReplyKind::InformAck,
        Ipv4Addr::UNSPECIFIED,
        0,
    )
}

fn nak(
    c: &Ctx<'_>,
    msg: &Dhcp4View<'_>,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
) -> Result<Option<(usize, u8)>, DropReason> {
    let off = payload_offset_v4(f.vlan_tci);
    if tx.len() <= off {
        return Err(DropReason::ReplyTooLarge);
    }
    let mut w = Dhcp4Writer::reply_to(&mut tx[off..], msg);
    w.option(OPT_MSG_TYPE, &[MessageType::Nak as u8]);
    w.option_ipv4(OPT_SERVER_ID, c.server_id);
    if let Some(cid) = msg.client_id() {
        if c.rt.cfg.echo_client_id {
            w.option(OPT_CLIENT_ID, cid);
        }
    }
    if let Some(o82) = msg.option(OPT_RELAY_AGENT) {
        w.option(OPT_RELAY_AGENT, o82);
    }
    let len = w.finish().ok_or(DropReason::ReplyTooLarge)?;
    // RFC 2131 §4.1: a NAK not relayed is broadcast; a relayed one gets the broadcast bit so the
    // relay broadcasts it.
    if !msg.giaddr().is_unspecified() {
        tx[off + 10] |= 0x80;
    }
    let frame_len = address_and_frame(c, msg, rxc, f, tx, len, Ipv4Addr::UNSPECIFIED, true);
    Ok(Some((frame_len, MessageType::Nak as u8)))
}

#[allow(clippy::too_many_arguments)]
fn build_reply(
    c: &Ctx<'_>,
    si: usize,
    msg: &Dhcp4View<'_>,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
    mt: MessageType,
    kind: ReplyKind,
    yiaddr: Ipv4Addr,
    valid: u32,
) -> Result<Option<(usize, u8)>, DropReason> {
    let s = &c.rt.subnets[si];
    let opts: &Opts4 = match kind {
        ReplyKind::InformAck => &s.opts,
        _ => s.pool_of(yiaddr).map_or(&s.opts, |p| &p.opts),
    };
    let off = payload_offset_v4(f.vlan_tci);
    if tx.len() <= off {
        return Err(DropReason::ReplyTooLarge);
    }
    let mut w = Dhcp4Writer::reply_to(&mut tx[off..], msg);
    w.set_yiaddr(yiaddr);
    if kind == ReplyKind::InformAck {
        w.set_ciaddr(msg.ciaddr());
    }
    // siaddr / sname / file: reservation, then classes, then subnet.
    let class_iter = || c.rt.classes.of(&c.classes);
    let next_server = c
        .res
        .and_then(|r| r.next_server)
        .or_else(|| class_iter().find_map(|k| k.next_server))
        .or(s.cfg.next_server);
    if let Some(ns) = next_server {
        w.set_siaddr(ns);
    }
    let sname = c
        .res
        .and_then(|r| r.server_hostname.as_deref())
        .or_else(|| class_iter().find_map(|k| k.server_hostname.as_deref()))
        .or(s.cfg.server_hostname.as_deref());
    if let Some(n) = sname {
        w.set_sname(n.as_bytes());
    }
    let file = c
        .res
        .and_then(|r| r.boot_file_name.as_deref())
        .or_else(|| class_iter().find_map(|k| k.boot_file_name.as_deref()))
        .or(s.cfg.boot_file_name.as_deref());
    if let Some(n) = file {
        w.set_file(n.as_bytes());
    }
    let mut written = [0u64; 4];
    let mark =
        |written: &mut [u64; 4], code: u8| written[usize::from(code) / 64] |= 1 << (code % 64);
    let is_written =
        |written: &[u64; 4], code: u8| written[usize::from(code) / 64] & (1 << (code % 64)) != 0;
    w.option(OPT_MSG_TYPE, &[mt as u8]);
    w.option_ipv4(OPT_SERVER_ID, c.server_id);
    for code in [
        OPT_MSG_TYPE,
        OPT_SERVER_ID,
        OPT_RELAY_AGENT,
        OPT_CLIENT_ID,
        OPT_REQUESTED_IP,
        OPT_PRL,
    ] {
        mark(&mut written, code);
    }
    if kind != ReplyKind::InformAck {
        w.option_u32(OPT_LEASE_TIME, valid);
        mark(&mut written, OPT_LEASE_TIME);
        let lt = &s.cfg.lifetimes;
        let (t1, t2) = match (lt.renew_timer, lt.rebind_timer) {
            (Some(t1), Some(t2)) => (Some(t1), Some(t2)),
            (t1, t2) if lt.calculate_tee_times => (
                t1.or(Some((f64::from(valid) * lt.t1_percent) as u32)),
                t2.or(Some((f64::from(valid) * lt.t2_percent) as u32)),
            ),
            (t1, t2) => (t1, t2),
        };
        // RFC 2131: T1 < T2 < lease time; timers that do not fit are left out (Kea does the same).
        if let Some(t2) = t2.filter(|&t| t < valid) {
            if let Some(t1) = t1.filter(|&t| t < t2) {
                w.option_u32(OPT_T1, t1);
            }
            w.option_u32(OPT_T2, t2);
        } else if let Some(t1) = t1.filter(|&t| t < valid) {
            w.option_u32(OPT_T1, t1);
        }
        mark(&mut written, OPT_T1);
        mark(&mut written, OPT_T2);
    }
    // Subnet mask always (unless configured as an option, then it comes from the table).
    if opts.encoded(OPT_SUBNET_MASK).is_none() {
        w.option_ipv4(OPT_SUBNET_MASK, s.mask);
        mark(&mut written, OPT_SUBNET_MASK);
    }
    let prl = msg.parameter_request_list();
    let wanted =
        |code: u8, always: bool| always || prl.contains(&code) || matches!(code, 1 | 3 | 6 | 15);
    // Reservation options first; then the merged table's pool/subnet/shared-network options; then
    // client-class options; then the table's global ones (Kea's buildCfgOptionList order).
    if let Some(r) = c.res {
        for o in &r.options.options {
            if let Ok(code) = u8::try_from(o.code) {
                if !is_written(&written, code) && wanted(code, o.always_send) {
                    w.option(code, &o.data);
                    mark(&mut written, code);
                }
            }
        }
        if let Some(h) = &r.hostname {
            if !is_written(&written, OPT_HOSTNAME)
                && (prl.contains(&OPT_HOSTNAME) || msg.has_option(OPT_HOSTNAME))
            {
                w.option(OPT_HOSTNAME, h.as_bytes());
                mark(&mut written, OPT_HOSTNAME);
            }
        }
    }
    for k in class_iter() {
        for o in &k.options.options {
            if let Ok(code) = u8::try_from(o.code) {
                let local = opts.encoded(code).is_some() && !opts.is_global(code);
                if !local && !is_written(&written, code) && wanted(code, o.always_send) {
                    w.option(code, &o.data);
                    mark(&mut written, code);
                }
            }
        }
    }
    for &code in prl
        .iter()
        .chain([OPT_SUBNET_MASK, OPT_ROUTERS, OPT_DNS, OPT_DOMAIN_NAME].iter())
        .chain(opts.always.iter())
    {
        if is_written(&written, code) {
            continue;
        }
        if let Some(enc) = opts.encoded(code) {
            w.raw(enc);
            mark(&mut written, code);
        }
    }
    if c.rt.cfg.echo_client_id {
        if let Some(cid) = msg.client_id() {
            w.option(OPT_CLIENT_ID, cid);
        }
    }
    // RFC 3046 §2.2: the relay agent information option is echoed, last before END.
    if let Some(o82) = msg.option(OPT_RELAY_AGENT) {
        w.option(OPT_RELAY_AGENT, o82);
    }
    let len = w.finish().ok_or(DropReason::ReplyTooLarge)?;
    let frame_len = address_and_frame(c, msg, rxc, f, tx, len, yiaddr, false);
    Ok(Some((frame_len, mt as u8)))
}

/// RFC 2131 §4.1 reply addressing, then the frame headers.
#[allow(clippy::too_many_arguments)]
fn address_and_frame(
    c: &Ctx<'_>,
    msg: &Dhcp4View<'_>,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
    payload_len: usize,
    yiaddr: Ipv4Addr,
    is_nak: bool,
) -> usize {
    let giaddr = msg.giaddr();
    let ciaddr = msg.ciaddr();
    let (dst_mac, dst_ip, dst_port) = if !giaddr.is_unspecified() {
        (f.src_mac, giaddr, SERVER_PORT)
    } else if !ciaddr.is_unspecified() && !is_nak {
        (f.src_mac, ciaddr, CLIENT_PORT)
    } else if is_nak || msg.flags() & FLAG_BROADCAST != 0 || yiaddr.is_unspecified() {
        (BROADCAST_MAC, Ipv4Addr::BROADCAST, CLIENT_PORT)
    } else if msg.htype() == 1 && msg.hlen() == 6 {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(msg.chaddr());
        (mac, yiaddr, CLIENT_PORT)
    } else {
        // No usable hardware address to unicast to.
        (BROADCAST_MAC, Ipv4Addr::BROADCAST, CLIENT_PORT)
    };
    let r = Udp4Reply {
        src_mac: rxc.if_mac,
        dst_mac,
        vlan_tci: f.vlan_tci,
        src_ip: c.server_id,
        dst_ip,
        src_port: SERVER_PORT,
        dst_port,
    };
    write_udp4_headers(tx, &r, payload_len)
}
