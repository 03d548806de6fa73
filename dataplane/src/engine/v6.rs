//! DHCPv6 message handling (RFC 8415): SOLICIT → ADVERTISE (or REPLY with Rapid Commit), REQUEST,
//! RENEW, REBIND, RELEASE, DECLINE, CONFIRM and INFORMATION-REQUEST → REPLY; IA_NA and IA_PD, any
//! number of IAs per message; status codes per IA and per message; Relay-forward chains answered
//! with the matching Relay-reply chain (interface-id echoed at every level); the server DUID in
//! every reply. Addresses and prefixes are owned through the lease store (claims under the address
//! shard lock, so no two clients ever share one), and every lease a REPLY carries has been handed
//! to the journal first. Replies are written in place into the transmit buffer: nothing is
//! allocated per packet on the common path.

use super::classes::{ClassTable, Classes};
use super::runtime6::{eui64_link_local, Opts6, Runtime6};
use super::{LeaseSink, Shared, Worker};
use crate::backend::{Now, RxContext};
use crate::lease::store::{ClientKey, LeaseStore};
use crate::lease::{HwAddr, IdBuf, Lease6, Lease6Type, LeaseChange, LeaseState};
use crate::wire::dhcp6::*;
use crate::wire::frame::{
    payload_offset_v6, write_udp6_headers, Udp6Reply, UdpFrame, L3, MAX_FRAME,
};
use crate::wire::DropReason;
use smallvec::SmallVec;
use std::net::Ipv6Addr;
use xdhcp_config::classify::ClassifyInput;
use xdhcp_config::model::{PktField, Reservation6};

/// What client-class tests see of a DHCPv6 message: the client's own options (inside any relay
/// chain), `pkt6.msgtype`, `pkt6.transid` and the receiving interface.
struct PacketInput<'a, 'b> {
    msg: &'a Dhcp6View<'b>,
    ifname: &'a str,
}

impl ClassifyInput for PacketInput<'_, '_> {
    fn option(&self, code: u16) -> Option<&[u8]> {
        self.msg.option(code)
    }
    fn relay4_suboption(&self, _sub: u8) -> Option<&[u8]> {
        None
    }
    fn pkt_field(&self, f: PktField) -> Vec<u8> {
        match f {
            PktField::MsgType6 => u32::from(self.msg.msg_type_raw()).to_be_bytes().to_vec(),
            PktField::TransId6 => {
                let x = self.msg.xid();
                u32::from_be_bytes([0, x[0], x[1], x[2]])
                    .to_be_bytes()
                    .to_vec()
            }
            PktField::Iface => self.ifname.as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }
}

/// Result of handling: the reply frame length and its message type, or nothing to send.
type Handled = Result<Option<(usize, u8)>, DropReason>;

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
        stats,
        sink,
        index,
        ..
    } = w;
    let Some(rt) = shared.rt6.as_ref() else {
        stats.dropped(DropReason::Unsupported);
        return None;
    };
    let msg = match Dhcp6View::parse(&rx[f.payload_start..f.payload_end]) {
        Ok(m) => m,
        Err(r) => {
            stats.dropped(r);
            return None;
        }
    };
    stats.received6(msg.msg_type_raw());
    match handle_msg(rt, shared, *index, sink.as_ref(), now, ctx, f, &msg, tx) {
        Ok(Some((len, t))) => {
            stats.sent6(t);
            Some(len)
        }
        Ok(None) => None,
        Err(r) => {
            stats.dropped(r);
            None
        }
    }
}

fn is_multicast(a: Ipv6Addr) -> bool {
    a.octets()[0] == 0xff
}

fn lease_type(k: IaKind) -> Lease6Type {
    match k {
        IaKind::Na => Lease6Type::Na,
        IaKind::Ta => Lease6Type::Ta,
        IaKind::Pd => Lease6Type::Pd,
    }
}

/// The client's hardware address: RFC 6939 option from a relay, else the link-layer part of a
/// DUID-LLT/DUID-LL, else (direct traffic) the frame's source MAC.
fn client_hwaddr(msg: &Dhcp6View<'_>, duid: &[u8], f: &UdpFrame) -> Option<HwAddr> {
    if let Some((htype, a)) = msg.client_linklayer_addr() {
        return Some(HwAddr::new(htype as u8, a));
    }
    if duid.len() > 8 && duid[..2] == [0, 1] {
        return Some(HwAddr::new(duid[3], &duid[8..]));
    }
    if duid.len() > 4 && duid[..2] == [0, 3] {
        return Some(HwAddr::new(duid[3], &duid[4..]));
    }
    (!msg.is_relayed()).then(|| HwAddr::ethernet(f.src_mac))
}

#[allow(clippy::too_many_arguments)]
fn handle_msg(
    rt: &Runtime6,
    shared: &Shared,
    worker: usize,
    sink: &dyn LeaseSink,
    now: Now,
    rxc: &RxContext,
    f: &UdpFrame,
    msg: &Dhcp6View<'_>,
    tx: &mut [u8],
) -> Handled {
    use MessageType6 as M;
    let mt = msg.msg_type()?;
    let L3::V6 { src, dst, .. } = f.l3 else {
        return Err(DropReason::NotIp);
    };
    if matches!(
        mt,
        M::Advertise | M::Reply | M::Reconfigure | M::RelayForw | M::RelayRepl
    ) {
        return Err(DropReason::UnknownMessageType);
    }
    // RFC 8415 §16: which messages must, and which must not, carry a server identifier.
    let duid = msg.client_id();
    let sid = msg.server_id();
    if mt != M::InformationRequest && duid.is_none() {
        return Err(DropReason::BadOptions);
    }
    match mt {
        M::Solicit | M::Confirm | M::Rebind if sid.is_some() => {
            return Err(DropReason::NotOurServerId)
        }
        M::Request | M::Renew | M::Release | M::Decline
            if sid != Some(rt.server_duid.as_slice()) =>
        {
            return Err(DropReason::NotOurServerId)
        }
        M::InformationRequest if sid.is_some_and(|s| s != rt.server_duid.as_slice()) => {
            return Err(DropReason::NotOurServerId)
        }
        M::InformationRequest if msg.ias().next().is_some() => return Err(DropReason::BadOptions),
        _ => {}
    }
    let ifname = shared.ifname(rxc.ifindex);
    // RFC 8415 §18.4: a direct client may unicast only to a server that sent it a Server Unicast
    // option; otherwise it is told to use multicast (Solicit/Confirm/Rebind are simply dropped).
    if !msg.is_relayed() && !is_multicast(dst) && !rt.unicast.contains_key(ifname) {
        return match mt {
            M::Solicit | M::Confirm | M::Rebind => Err(DropReason::Unsupported),
            _ => {
                let mut w = start_reply(tx, f, msg, M::Reply)?;
                w.option(OPT_SERVERID, &rt.server_duid);
                if let Some(d) = duid {
                    w.option(OPT_CLIENTID, d);
                }
                w.status(Status::UseMulticast, "use multicast");
                send(rt, rxc, f, msg, close(w, msg)?, tx, M::Reply)
            }
        };
    }
    let relay_link = msg.innermost_relay().map(|r| r.link_addr);
    // Classes with tests are decided before the subnet (Kea's order), so a subnet's
    // `client-class` can steer the client to another subnet of the shared network.
    let mut classes = rt.classes.classify(&PacketInput { msg, ifname });
    let si = rt
        .select_subnet(relay_link, msg.interface_id(), ifname, src)
        .and_then(|si| {
            rt.subnets[si].candidates.iter().copied().find(|&s| {
                let guard = rt.subnets[s].cfg.client_class.as_deref();
                rt.classes.allows(&classes, guard)
            })
        });
    let Some(si) = si else {
        if mt == M::InformationRequest {
            return information(rt, None, None, &classes, ifname, rxc, f, msg, tx);
        }
        return Err(DropReason::NoSubnet);
    };
    let subnet_id = rt.subnets[si].cfg.id;
    let balanced = !matches!(mt, M::InformationRequest);
    if !shared.gate6.serve(
        subnet_id,
        duid.unwrap_or(&[]),
        balanced,
        msg.elapsed_time() / 100,
    ) {
        return Err(DropReason::NotServing);
    }
    let Some(duid) = duid else {
        return information(rt, Some(si), None, &classes, ifname, rxc, f, msg, tx);
    };
    let hw = client_hwaddr(msg, duid, f);
    let res = rt.reservation(si, duid, hw.as_ref().map(|h| h.as_slice()));
    if let Some(r) = res {
        rt.classes.add_reserved(&mut classes, &r.client_classes);
    }
    let c = Ctx {
        rt,
        store: &shared.store,
        sink,
        worker,
        si,
        duid,
        hw,
        res,
        classes,
        now: now.unix_secs,
        msg,
    };
    match mt {
        M::Solicit => {
            let commit = msg.rapid_commit() && rt.subnets[si].rapid_commit;
            let rmt = if commit { M::Reply } else { M::Advertise };
            assign_all(&c, commit, rmt, ifname, rxc, f, tx)
        }
        M::Request => assign_all(&c, true, M::Reply, ifname, rxc, f, tx),
        M::Renew => extend_all(&c, false, ifname, rxc, f, tx),
        M::Rebind => extend_all(&c, true, ifname, rxc, f, tx),
        M::Release => release_or_decline(&c, false, rxc, f, tx),
        M::Decline => release_or_decline(&c, true, rxc, f, tx),
        M::Confirm => confirm(&c, rxc, f, tx),
        M::InformationRequest => {
            information(rt, Some(si), c.res, &c.classes, ifname, rxc, f, msg, tx)
        }
        _ => Err(DropReason::UnknownMessageType),
    }
}

/// Open a reply: the Relay-reply chain mirroring the request's relays (interface-id echoed at
/// every level, RFC 8415 §19.3), then the message header.
fn start_reply<'t>(
    tx: &'t mut [u8],
    f: &UdpFrame,
    msg: &Dhcp6View<'_>,
    mt: MessageType6,
) -> Result<Dhcp6Writer<'t>, DropReason> {
    let off = payload_offset_v6(f.vlan_tci);
    let end = tx.len().min(MAX_FRAME);
    if end <= off {
        return Err(DropReason::ReplyTooLarge);
    }
    let mut w = Dhcp6Writer::new(&mut tx[off..end]);
    for i in 0..msg.relay_count() {
        let Some(r) = msg.relay(i) else { break };
        w.relay_repl_header(r.hop_count, r.link_addr, r.peer_addr);
        if let Some(id) = r.interface_id() {
            w.option(OPT_INTERFACE_ID, id);
        }
        w.begin(OPT_RELAY_MSG);
    }
    w.message_header(mt, msg.xid());
    Ok(w)
}

/// Close the relay chain (`close`), then write the frame headers (`send`). Relayed replies go to the outermost relay
/// (the packet's source) on port 547; direct ones to the client's source address on port 546.
/// The source is the address the request was sent to when that was unicast, else the
/// interface's link-local address.
fn close(mut w: Dhcp6Writer<'_>, msg: &Dhcp6View<'_>) -> Result<usize, DropReason> {
    for _ in 0..msg.relay_count() {
        w.end();
    }
    w.finish().ok_or(DropReason::ReplyTooLarge)
}

fn send(
    rt: &Runtime6,
    rxc: &RxContext,
    f: &UdpFrame,
    msg: &Dhcp6View<'_>,
    len: usize,
    tx: &mut [u8],
    mt: MessageType6,
) -> Handled {
    let L3::V6 { src, dst, .. } = f.l3 else {
        return Err(DropReason::NotIp);
    };
    let src_ip = if is_multicast(dst) {
        rt.link_local
            .get(&rxc.ifindex)
            .copied()
            .unwrap_or_else(|| eui64_link_local(rxc.if_mac))
    } else {
        dst
    };
    let dst_port = if msg.is_relayed() {
        SERVER_PORT
    } else {
        CLIENT_PORT
    };
    let r = Udp6Reply {
        src_mac: rxc.if_mac,
        dst_mac: f.src_mac,
        vlan_tci: f.vlan_tci,
        src_ip,
        dst_ip: src,
        src_port: SERVER_PORT,
        dst_port,
        hop_limit: 64,
    };
    Ok(Some((write_udp6_headers(tx, &r, len), mt as u8)))
}

/// Everything derived from the request that the handlers share.
struct Ctx<'a> {
    rt: &'a Runtime6,
    store: &'a LeaseStore,
    sink: &'a dyn LeaseSink,
    worker: usize,
    si: usize,
    duid: &'a [u8],
    hw: Option<HwAddr>,
    res: Option<&'a Reservation6>,
    /// The client's classes: by test, then those its reservation names.
    classes: Classes,
    now: u64,
    msg: &'a Dhcp6View<'a>,
}

/// An address or prefix granted to an IA.
#[derive(Clone, Copy)]
struct Granted {
    si: usize,
    addr: Ipv6Addr,
    len: u8,
    preferred: u32,
    valid: u32,
}

impl Ctx<'_> {
    fn key(&self, si: usize, iaid: u32, ty: Lease6Type) -> ClientKey {
        ClientKey::v6(self.rt.subnets[si].cfg.id, self.duid, iaid, ty)
    }

    /// The subnets the client may use, in order: the selected one, then the rest of its shared
    /// network, each only if its `client-class` admits the client.
    fn candidates(&self) -> impl Iterator<Item = usize> + '_ {
        self.rt.subnets[self.si]
            .candidates
            .iter()
            .copied()
            .filter(|&si| {
                let guard = self.rt.subnets[si].cfg.client_class.as_deref();
                self.rt.classes.allows(&self.classes, guard)
            })
    }

    fn pool_allowed(&self, class: &Option<String>) -> bool {
        self.rt.classes.allows(&self.classes, class.as_deref())
    }

    /// The candidate subnet (this link) containing address `a`.
    fn on_link(&self, a: Ipv6Addr) -> Option<usize> {
        self.candidates()
            .find(|&si| self.rt.subnets[si].cfg.contains(a))
    }

    fn reserved_for_me(&self, a: Ipv6Addr, len: u8) -> bool {
        self.res.is_some_and(|r| {
            if len == 128 {
                r.ip_addresses.contains(&a)
            } else {
                r.prefixes.contains(&(a, len))
            }
        })
    }

    /// May this client hold `a`/`len` in subnet `si`: reserved for it, or in a pool it may use
    /// and not reserved for somebody else.
    fn resource_ok(&self, si: usize, a: Ipv6Addr, len: u8, ty: Lease6Type) -> bool {
        let s = &self.rt.subnets[si];
        if ty != Lease6Type::Pd && !s.cfg.contains(a) {
            return false;
        }
        if self.reserved_for_me(a, len) {
            return true;
        }
        if self.rt.reserved_for_other(si, a, len, self.res) {
            return false;
        }
        match ty {
            Lease6Type::Pd => s
                .pd_pool_of(a, len)
                .is_some_and(|p| self.pool_allowed(&p.client_class)),
            _ => {
                len == 128
                    && s.pool_of(a)
                        .is_some_and(|p| self.pool_allowed(&p.client_class))
            }
        }
    }

    /// The client's current binding for this IA on this link (declined leases excluded).
    fn binding(&self, iaid: u32, ty: Lease6Type) -> Option<(usize, Lease6)> {
        self.candidates().find_map(|si| {
            let l = self.store.get_by_client6(&self.key(si, iaid, ty), ty)?;
            (l.state != LeaseState::Declined).then_some((si, l))
        })
    }

    /// Lifetimes: the client's hints clamped to the subnet's bounds, the defaults otherwise;
    /// preferred never exceeds valid.
    fn lifetimes(&self, si: usize, hint_pref: u32, hint_valid: u32) -> (u32, u32) {
        let lt = &self.rt.subnets[si].cfg.lifetimes;
        let clamp = |hint: u32, dflt: u32, lo: u32, hi: u32| {
            if hint == 0 || hi == 0 {
                dflt
            } else {
                hint.clamp(lo.min(hi), hi)
            }
        };
        // A class's valid-lifetime replaces the subnet default (the client's hint still wins).
        let dflt_valid = self
            .rt
            .classes
            .of(&self.classes)
            .find_map(|k| k.valid_lifetime)
            .unwrap_or(lt.valid);
        let valid = clamp(hint_valid, dflt_valid, lt.min_valid, lt.max_valid);
        let pref = clamp(hint_pref, lt.preferred, lt.min_preferred, lt.max_preferred);
        (pref.min(valid), valid)
    }

    /// T1/T2 for an IA: renew/rebind timers, else calculated from the preferred lifetime
    /// (calculate-tee-times); T1 is dropped to 0 (client's choice) rather than exceed T2.
    fn timers(&self, si: usize, preferred: u32) -> (u32, u32) {
        let lt = &self.rt.subnets[si].cfg.lifetimes;
        let calc = |pct: f64| (f64::from(preferred) * pct) as u32;
        let t1 = lt
            .renew_timer
            .or_else(|| lt.calculate_tee_times.then(|| calc(lt.t1_percent)))
            .unwrap_or(0);
        let t2 = lt
            .rebind_timer
            .or_else(|| lt.calculate_tee_times.then(|| calc(lt.t2_percent)))
            .unwrap_or(0);
        if t2 != 0 && t1 > t2 {
            (0, t2)
        } else {
            (t1, t2)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_lease(
        &self,
        si: usize,
        addr: Ipv6Addr,
        len: u8,
        ty: Lease6Type,
        iaid: u32,
        state: LeaseState,
        pref: u32,
        valid: u32,
    ) -> Lease6 {
        Lease6 {
            addr,
            prefix_len: len,
            lease_type: ty,
            duid: IdBuf::from_slice(self.duid),
            iaid,
            subnet_id: self.rt.subnets[si].cfg.id,
            cltt: self.now,
            valid_lft: valid,
            preferred_lft: pref,
            state,
            hwaddr: self.hw,
            fqdn_fwd: false,
            fqdn_rev: false,
            hostname: self
                .res
                .and_then(|r| r.hostname.as_deref())
                .map(std::sync::Arc::from),
        }
    }

    /// Journal a committed lease with the version stamped under the store's lock for it (so the
    /// journal orders changes to one address as the store made them); `has_room` was checked by
    /// the caller for this single push.
    fn journal(&self, version: u64, l: Lease6) -> Result<(), DropReason> {
        if self.sink.push_versioned(version, LeaseChange::Put6(l)) {
            Ok(())
        } else {
            Err(DropReason::JournalFull)
        }
    }

    /// Take `a`/`len` for this IA: held briefly for an ADVERTISE, or assigned and journaled.
    /// Ok(false) when another client holds it.
    #[allow(clippy::too_many_arguments)]
    fn try_claim(
        &self,
        si: usize,
        a: Ipv6Addr,
        len: u8,
        ty: Lease6Type,
        iaid: u32,
        commit: bool,
        pref: u32,
        valid: u32,
    ) -> Result<bool, DropReason> {
        let key = self.key(si, iaid, ty);
        if !commit {
            // An active binding stays as it is: an ADVERTISE must not shorten it to an offer hold.
            if let Some(l) = self.store.get_by_addr6(a, ty) {
                if key.matches6(&l) && l.state == LeaseState::Assigned && l.is_active(self.now) {
                    return Ok(true);
                }
            }
            let hold = self.rt.cfg.tuning.offer_hold_secs.max(1);
            let offer = self.new_lease(
                si,
                a,
                len,
                ty,
                iaid,
                LeaseState::Offered,
                hold.min(pref),
                hold,
            );
            return Ok(self.store.claim6(&key, offer, self.now).is_ok());
        }
        if !self.sink.has_room() {
            // Never acknowledge what cannot be journaled; the client retransmits.
            return Err(DropReason::JournalFull);
        }
        let lease = self.new_lease(si, a, len, ty, iaid, LeaseState::Assigned, pref, valid);
        match self
            .store
            .claim6_stamped(&key, lease.clone(), self.now, &|| self.sink.take_version())
        {
            Ok((_, version)) => self.journal(version, lease).map(|_| true),
            Err(_) => Ok(false),
        }
    }

    /// Allocate a free address or prefix from the pools of subnet `si` the client may use.
    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &self,
        si: usize,
        ty: Lease6Type,
        iaid: u32,
        hint_len: u8,
        commit: bool,
        pref: u32,
        valid: u32,
    ) -> Result<Option<Granted>, DropReason> {
        let s = &self.rt.subnets[si];
        let key = self.key(si, iaid, ty);
        // Free units are taken as an offer hold first; a commit then claims the held unit as an
        // assignment, so the journal version is stamped under the address lock like every claim.
        let hold = self.rt.cfg.tuning.offer_hold_secs.max(1);
        let (state, p, v) = (LeaseState::Offered, hold.min(pref), hold);
        // (store pool index, unit length); for PD the pools matching the hinted length go first.
        let mut pools: SmallVec<[(usize, u8); 8]> = SmallVec::new();
        match ty {
            Lease6Type::Pd => {
                for pass in 0..2 {
                    for pp in &s.pd_pools {
                        let matches_hint = hint_len == 0 || pp.delegated_len == hint_len;
                        if (pass == 0) == matches_hint
                            && self.pool_allowed(&pp.client_class)
                            && pools.len() < pools.inline_size()
                        {
                            pools.push((pp.store_index, pp.delegated_len));
                        }
                    }
                }
            }
            _ => {
                for pp in &s.pools {
                    if self.pool_allowed(&pp.client_class) && pools.len() < pools.inline_size() {
                        pools.push((pp.store_index, 128));
                    }
                }
            }
        }
        for &(pi, len) in &pools {
            // Bounded retries: only claims that lose a race are retried.
            for _ in 0..4 {
                if commit && !self.sink.has_room() {
                    return Err(DropReason::JournalFull);
                }
                // Addresses and prefixes reserved for other clients are skipped and stay free.
                let make = |a: Ipv6Addr| {
                    (!self.rt.reserved_for_other(si, a, len, self.res))
                        .then(|| self.new_lease(si, a, len, ty, iaid, state, p, v))
                };
                let Ok(l) = self
                    .store
                    .allocate6(&key, &[pi], self.worker, &make, self.now)
                else {
                    break;
                };
                if commit && !self.try_claim(si, l.addr, len, ty, iaid, true, pref, valid)? {
                    continue;
                }
                return Ok(Some(Granted {
                    si,
                    addr: l.addr,
                    len,
                    preferred: pref,
                    valid,
                }));
            }
        }
        Ok(None)
    }

    /// Find something for an IA in a SOLICIT/REQUEST, in Kea's order: the current binding, a
    /// reservation, the client's hint, then the pools of this link.
    fn assign(&self, ia: &Ia<'_>, commit: bool) -> Result<Option<Granted>, DropReason> {
        let ty = lease_type(ia.kind);
        if ty == Lease6Type::Ta {
            return Ok(None);
        }
        let (mut hint_pref, mut hint_valid, mut hint_len) = (0, 0, 0);
        if let Some(a) = ia.addrs().next() {
            (hint_pref, hint_valid) = (a.preferred, a.valid);
        }
        if let Some(p) = ia.prefixes().next() {
            (hint_pref, hint_valid, hint_len) = (p.preferred, p.valid, p.prefix_len);
        }
        let old = self.binding(ia.iaid, ty);
        let mut tried: SmallVec<[(usize, Ipv6Addr, u8); 8]> = SmallVec::new();
        let mut push = |t: (usize, Ipv6Addr, u8)| {
            if tried.len() < tried.inline_size() && !tried.contains(&t) {
                tried.push(t);
            }
        };
        if let Some((si, l)) = &old {
            push((*si, l.addr, l.prefix_len));
        }
        if let Some(r) = self.res {
            if ty == Lease6Type::Na {
                for &a in &r.ip_addresses {
                    if let Some(si) = self.on_link(a) {
                        push((si, a, 128));
                    }
                }
            } else {
                for &(p, l) in &r.prefixes {
                    push((self.si, p, l));
                }
            }
        }
        if ty == Lease6Type::Na {
            for a in ia.addrs() {
                if let Some(si) = self.on_link(a.addr) {
                    push((si, a.addr, 128));
                }
            }
        } else {
            for p in ia.prefixes().filter(|p| !p.prefix.is_unspecified()) {
                if let Some(si) = self.candidates().find(|&si| {
                    self.rt.subnets[si]
                        .pd_pool_of(p.prefix, p.prefix_len)
                        .is_some()
                }) {
                    push((si, p.prefix, p.prefix_len));
                }
            }
        }
        let mut granted = None;
        for &(si, a, len) in &tried {
            if !self.resource_ok(si, a, len, ty) {
                continue;
            }
            let (pref, valid) = self.lifetimes(si, hint_pref, hint_valid);
            if self.try_claim(si, a, len, ty, ia.iaid, commit, pref, valid)? {
                granted = Some(Granted {
                    si,
                    addr: a,
                    len,
                    preferred: pref,
                    valid,
                });
                break;
            }
        }
        if granted.is_none() {
            for si in self.candidates() {
                let (pref, valid) = self.lifetimes(si, hint_pref, hint_valid);
                if let Some(g) = self.allocate(si, ty, ia.iaid, hint_len, commit, pref, valid)? {
                    granted = Some(g);
                    break;
                }
            }
        }
        // A client holds one binding per IA: an earlier one at another address is released.
        if let (true, Some(g), Some((osi, o))) = (commit, granted, old) {
            if o.addr != g.addr && o.state == LeaseState::Assigned && self.sink.has_room() {
                let now = self.now;
                let mut released = |l: &mut Lease6| {
                    l.state = LeaseState::ExpiredReclaimed;
                    l.cltt = now;
                    l.valid_lft = 0;
                    l.preferred_lft = 0;
                };
                let key = self.key(osi, ia.iaid, ty);
                let stamp = || self.sink.take_version();
                if let Some((l, version)) =
                    self.store
                        .update6_stamped(&key, o.addr, ty, &mut released, &stamp)
                {
                    self.journal(version, l)?;
                }
            }
        }
        Ok(granted)
    }

    /// Write one IA carrying a granted address or prefix.
    fn write_granted(&self, w: &mut Dhcp6Writer<'_>, kind: IaKind, iaid: u32, g: &Granted) {
        let (t1, t2) = self.timers(g.si, g.preferred);
        w.begin_ia(kind, iaid, t1, t2);
        self.write_resource(w, kind, g.si, g.addr, g.len, g.preferred, g.valid);
        w.end();
    }

    #[allow(clippy::too_many_arguments)]
    fn write_resource(
        &self,
        w: &mut Dhcp6Writer<'_>,
        kind: IaKind,
        si: usize,
        a: Ipv6Addr,
        len: u8,
        pref: u32,
        valid: u32,
    ) {
        if kind == IaKind::Pd {
            w.begin_iaprefix(a, len, pref, valid);
            // RFC 6603: the excluded prefix, when configured and asked for.
            if valid != 0 && self.msg.requests_option(OPT_PD_EXCLUDE) {
                if let Some(pp) = self.rt.subnets[si].pd_pool_of(a, len) {
                    let mut buf = [0u8; 17];
                    if let Some(n) = pp.pd_exclude(&mut buf) {
                        w.option(OPT_PD_EXCLUDE, &buf[..n]);
                    }
                }
            }
        } else {
            w.begin_iaaddr(a, pref, valid);
        }
        w.end();
    }

    /// The option table for the reply: the pool of the first granted resource, else the subnet's.
    fn table_for(&self, g: Option<(IaKind, Granted)>) -> &Opts6 {
        let s = &self.rt.subnets[self.si];
        match g {
            Some((IaKind::Pd, g)) => {
                let gs = &self.rt.subnets[g.si];
                gs.pd_pool_of(g.addr, g.len).map_or(&gs.opts, |p| &p.opts)
            }
            Some((_, g)) => {
                let gs = &self.rt.subnets[g.si];
                gs.pool_of(g.addr).map_or(&gs.opts, |p| &p.opts)
            }
            None => &s.opts,
        }
    }
}

fn no_resource_status(kind: IaKind) -> (Status, &'static str) {
    match kind {
        IaKind::Pd => (Status::NoPrefixAvail, "no prefixes available"),
        _ => (Status::NoAddrsAvail, "no addresses available"),
    }
}

/// Configured options the client asked for (Option Request Option) plus `always-send` ones;
/// reservation options take precedence over the table. Options the protocol itself manages are
/// never taken from configuration.
fn write_options(
    w: &mut Dhcp6Writer<'_>,
    msg: &Dhcp6View<'_>,
    opts: &Opts6,
    res: Option<&Reservation6>,
    (table, member): (&ClassTable, &Classes),
) {
    let managed = |c: u16| {
        matches!(
            c,
            OPT_CLIENTID
                | OPT_SERVERID
                | OPT_IA_NA
                | OPT_IA_TA
                | OPT_IAADDR
                | OPT_ORO
                | OPT_ELAPSED_TIME
                | OPT_RELAY_MSG
                | OPT_UNICAST
                | OPT_STATUS_CODE
                | OPT_RAPID_COMMIT
                | OPT_INTERFACE_ID
                | OPT_IA_PD
                | OPT_IAPREFIX
                | OPT_PD_EXCLUDE
        )
    };
    // Kea's order: reservation, then the table's pool/subnet/shared-network options, then the
    // client classes in the order decided, then the table's global options.
    let class_opt = |code: u16| table.of(member).find_map(|k| k.options.get(code));
    let mut emit = |code: u16| {
        if let Some(o) = res.and_then(|r| r.options.get(code)) {
            w.option(code, &o.data);
        } else if let Some(e) = opts.encoded(code).filter(|_| !opts.is_global(code)) {
            w.raw(e);
        } else if let Some(o) = class_opt(code) {
            w.option(code, &o.data);
        } else if let Some(e) = opts.encoded(code) {
            w.raw(e);
        }
    };
    // Duplicates in the ORO are skipped by looking back (ORO lists are short; no set needed).
    let oro = msg.option(OPT_ORO).unwrap_or(&[]);
    for (i, ch) in oro.chunks_exact(2).enumerate() {
        let code = u16::from_be_bytes([ch[0], ch[1]]);
        if managed(code) || oro[..i * 2].chunks_exact(2).any(|p| p == ch) {
            continue;
        }
        emit(code);
    }
    let asked = |code: u16| oro.chunks_exact(2).any(|p| p == code.to_be_bytes());
    for &code in &opts.always {
        if !managed(code) && !asked(code) {
            emit(code);
        }
    }
    let mut sent_always: SmallVec<[u16; 8]> = SmallVec::new();
    let extra = res
        .into_iter()
        .flat_map(|r| r.options.options.iter())
        .chain(table.of(member).flat_map(|k| k.options.options.iter()));
    for o in extra.filter(|o| o.always_send) {
        if !managed(o.code)
            && !asked(o.code)
            && !opts.always.contains(&o.code)
            && !sent_always.contains(&o.code)
        {
            emit(o.code);
            if sent_always.len() < sent_always.inline_size() {
                sent_always.push(o.code);
            }
        }
    }
}

/// Server and client identifiers, then (for replies to direct clients on a unicast-enabled
/// interface) the Server Unicast option.
fn write_ids(
    w: &mut Dhcp6Writer<'_>,
    rt: &Runtime6,
    duid: Option<&[u8]>,
    ifname: &str,
    msg: &Dhcp6View<'_>,
) {
    w.option(OPT_SERVERID, &rt.server_duid);
    if let Some(d) = duid {
        w.option(OPT_CLIENTID, d);
    }
    if !msg.is_relayed() {
        if let Some(a) = rt.unicast.get(ifname) {
            w.option(OPT_UNICAST, &a.octets());
        }
    }
}

/// SOLICIT (ADVERTISE, or REPLY with Rapid Commit) and REQUEST (REPLY): one answer per IA.
fn assign_all(
    c: &Ctx<'_>,
    commit: bool,
    rmt: MessageType6,
    ifname: &str,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
) -> Handled {
    let msg = c.msg;
    // Bindings first (they touch the store and the journal), the reply afterwards: the writer
    // borrows `tx`, so results are kept in a small inline array.
    let mut out: SmallVec<[(IaKind, u32, Option<Granted>); 8]> = SmallVec::new();
    for ia in msg.ias() {
        if out.len() == out.inline_size() {
            break; // more IAs than any real client sends: answer the first ones
        }
        let g = c.assign(&ia, commit)?;
        out.push((ia.kind, ia.iaid, g));
    }
    let first = out.iter().find_map(|(k, _, g)| g.map(|g| (*k, g)));
    let mut w = start_reply(tx, f, msg, rmt)?;
    write_ids(&mut w, c.rt, Some(c.duid), ifname, msg);
    for (kind, iaid, g) in &out {
        match g {
            Some(g) => c.write_granted(&mut w, *kind, *iaid, g),
            None => {
                w.begin_ia(*kind, *iaid, 0, 0);
                let (s, text) = no_resource_status(*kind);
                w.status(s, text);
                w.end();
            }
        }
    }
    if rmt == MessageType6::Reply && msg.msg_type_raw() == MessageType6::Solicit as u8 {
        w.option(OPT_RAPID_COMMIT, &[]);
    }
    write_options(
        &mut w,
        msg,
        c.table_for(first),
        c.res,
        (&c.rt.classes, &c.classes),
    );
    send(c.rt, rxc, f, msg, close(w, msg)?, tx, rmt)
}

/// RENEW and REBIND (RFC 8415 §18.3.4/§18.3.5): extend the IA's binding; addresses the client
/// may no longer use come back with zero lifetimes; an IA without a binding gets NoBinding.
/// A client presenting a free, appropriate address without a binding here (after a failover or
/// a lost journal tail) gets it back, as DESIGN.md asks of a surviving server.
fn extend_all(
    c: &Ctx<'_>,
    rebind: bool,
    ifname: &str,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
) -> Handled {
    let msg = c.msg;
    let mut out: SmallVec<[(IaKind, u32, Option<Granted>); 8]> = SmallVec::new();
    for ia in msg.ias() {
        if out.len() == out.inline_size() {
            break;
        }
        let ty = lease_type(ia.kind);
        let mut g = None;
        if ty != Lease6Type::Ta {
            let (mut hp, mut hv) = (0, 0);
            if let Some(a) = ia.addrs().next() {
                (hp, hv) = (a.preferred, a.valid);
            }
            if let Some(p) = ia.prefixes().next() {
                (hp, hv) = (p.preferred, p.valid);
            }
            let mut cands: SmallVec<[(usize, Ipv6Addr, u8); 8]> = SmallVec::new();
            if let Some((si, l)) = c.binding(ia.iaid, ty) {
                cands.push((si, l.addr, l.prefix_len));
            }
            for a in ia.addrs() {
                if let (Some(si), true) = (c.on_link(a.addr), cands.len() < cands.inline_size()) {
                    cands.push((si, a.addr, 128));
                }
            }
            for p in ia.prefixes() {
                let si = c.candidates().find(|&si| {
                    c.rt.subnets[si]
                        .pd_pool_of(p.prefix, p.prefix_len)
                        .is_some()
                });
                if let (Some(si), true) = (
                    si.or(c.reserved_for_me(p.prefix, p.prefix_len).then_some(c.si)),
                    cands.len() < cands.inline_size(),
                ) {
                    cands.push((si, p.prefix, p.prefix_len));
                }
            }
            for &(si, a, len) in &cands {
                if !c.resource_ok(si, a, len, ty) {
                    continue;
                }
                let (pref, valid) = c.lifetimes(si, hp, hv);
                if c.try_claim(si, a, len, ty, ia.iaid, true, pref, valid)? {
                    g = Some(Granted {
                        si,
                        addr: a,
                        len,
                        preferred: pref,
                        valid,
                    });
                    break;
                }
            }
        }
        out.push((ia.kind, ia.iaid, g));
    }
    let mut w = start_reply(tx, f, msg, MessageType6::Reply)?;
    write_ids(&mut w, c.rt, Some(c.duid), ifname, msg);
    // Walk the IAs again (zero-copy views of the request) to write the answers in order.
    for (ia, (kind, iaid, g)) in msg.ias().zip(out.iter()) {
        let (t1, t2) = g.map_or((0, 0), |g| c.timers(g.si, g.preferred));
        w.begin_ia(*kind, *iaid, t1, t2);
        let mut zeroed = false;
        if let Some(g) = g {
            c.write_resource(&mut w, *kind, g.si, g.addr, g.len, g.preferred, g.valid);
        }
        // Everything else the client presented must stop being used.
        let si = c.si;
        for a in ia.addrs().filter(|a| g.is_none_or(|g| g.addr != a.addr)) {
            if g.is_some() || c.on_link(a.addr).is_none() {
                c.write_resource(&mut w, *kind, si, a.addr, 128, 0, 0);
                zeroed = true;
            }
        }
        for p in ia
            .prefixes()
            .filter(|p| g.is_none_or(|g| (g.addr, g.len) != (p.prefix, p.prefix_len)))
        {
            if g.is_some()
                || !p.prefix.is_unspecified()
                    && !c.resource_ok(si, p.prefix, p.prefix_len, Lease6Type::Pd)
            {
                c.write_resource(&mut w, *kind, si, p.prefix, p.prefix_len, 0, 0);
                zeroed = true;
            }
        }
        if g.is_none() && !(rebind && zeroed) {
            w.status(Status::NoBinding, "no binding for this IA");
        }
        w.end();
    }
    write_options(
        &mut w,
        msg,
        c.table_for(out.iter().find_map(|(k, _, g)| g.map(|g| (*k, g)))),
        c.res,
        (&c.rt.classes, &c.classes),
    );
    send(c.rt, rxc, f, msg, close(w, msg)?, tx, MessageType6::Reply)
}

/// RELEASE and DECLINE (RFC 8415 §18.3.7/§18.3.8): every address or prefix the client names that
/// is bound to it is released (or declined: held for the probation period, detached from the
/// client); IAs with nothing bound get NoBinding. The message status is Success.
fn release_or_decline(
    c: &Ctx<'_>,
    decline: bool,
    rxc: &RxContext,
    f: &UdpFrame,
    tx: &mut [u8],
) -> Handled {
    let msg = c.msg;
    let probation = c.rt.cfg.decline_probation_period_secs;
    let mut found: SmallVec<[bool; 8]> = SmallVec::new();
    for ia in msg.ias() {
        if found.len() == found.inline_size() {
            break;
        }
        let ty = lease_type(ia.kind);
        let mut any = false;
        let items = ia
            .addrs()
            .map(|a| a.addr)
            .chain(ia.prefixes().map(|p| p.prefix));
        for a in items {
            for si in c.candidates() {
                if !c.sink.has_room() {
                    return Err(DropReason::JournalFull);
                }
                let key = c.key(si, ia.iaid, ty);
                // Only a live binding can be released or declined (a released lease is kept
                // for affinity but is no binding any more).
                let bound = c
                    .store
                    .get_by_addr6(a, ty)
                    .is_some_and(|l| key.matches6(&l) && l.state == LeaseState::Assigned);
                if !bound {
                    continue;
                }
                let now = c.now;
                let stamp = || c.sink.take_version();
                let updated = c.store.update6_stamped(
                    &key,
                    a,
                    ty,
                    &mut |l| {
                        l.cltt = now;
                        if decline {
                            l.state = LeaseState::Declined;
                            l.valid_lft = probation;
                            l.preferred_lft = 0;
                            // Detached from the client (Kea stores an empty DUID), so the client's
                            // next SOLICIT gets a different address.
                            l.duid = IdBuf::from_slice(&[0]);
                            l.hwaddr = None;
                            l.hostname = None;
                        } else {
                            l.state = LeaseState::ExpiredReclaimed;
                            l.valid_lft = 0;
                            l.preferred_lft = 0;
                        }
                    },
                    &stamp,
                );
                if let Some((l, version)) = updated {
                    c.journal(version, l)?;
                    any = true;
                    break;
                }
            }
        }
        found.push(any);
    }
    let mut w = start_reply(tx, f, msg, MessageType6::Reply)?;
    w.option(OPT_SERVERID, &c.rt.server_duid);
    w.option(OPT_CLIENTID, c.duid);
    for (ia, ok) in msg.ias().zip(found.iter()) {
        if !ok {
            w.begin_ia(ia.kind, ia.iaid, 0, 0);
            w.status(Status::NoBinding, "no binding for this IA");
            w.end();
        }
    }
    w.status(
        Status::Success,
        if decline {
            "decline received"
        } else {
            "release received"
        },
    );
    send(c.rt, rxc, f, msg, close(w, msg)?, tx, MessageType6::Reply)
}

/// CONFIRM (RFC 8415 §18.3.3): are the client's addresses still on this link? Silence when it
/// names no address.
fn confirm(c: &Ctx<'_>, rxc: &RxContext, f: &UdpFrame, tx: &mut [u8]) -> Handled {
    let msg = c.msg;
    let mut any = false;
    let mut all_on_link = true;
    for ia in msg.ias().filter(|ia| ia.kind != IaKind::Pd) {
        for a in ia.addrs() {
            any = true;
            all_on_link &= c.on_link(a.addr).is_some();
        }
    }
    if !any {
        return Err(DropReason::NoLeaseForClient);
    }
    let mut w = start_reply(tx, f, msg, MessageType6::Reply)?;
    w.option(OPT_SERVERID, &c.rt.server_duid);
    w.option(OPT_CLIENTID, c.duid);
    if all_on_link {
        w.status(Status::Success, "all addresses still on link");
    } else {
        w.status(Status::NotOnLink, "some addresses are not on link");
    }
    send(c.rt, rxc, f, msg, close(w, msg)?, tx, MessageType6::Reply)
}

/// INFORMATION-REQUEST: configuration options only (the subnet's when one is selected, the
/// global ones otherwise).
#[allow(clippy::too_many_arguments)]
fn information(
    rt: &Runtime6,
    si: Option<usize>,
    res: Option<&Reservation6>,
    classes: &Classes,
    ifname: &str,
    rxc: &RxContext,
    f: &UdpFrame,
    msg: &Dhcp6View<'_>,
    tx: &mut [u8],
) -> Handled {
    let mut w = start_reply(tx, f, msg, MessageType6::Reply)?;
    write_ids(&mut w, rt, msg.client_id(), ifname, msg);
    let opts = si.map_or(&rt.global_opts, |si| &rt.subnets[si].opts);
    write_options(&mut w, msg, opts, res, (&rt.classes, classes));
    send(rt, rxc, f, msg, close(w, msg)?, tx, MessageType6::Reply)
}
