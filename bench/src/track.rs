//! Bookkeeping of outstanding exchanges: a fixed table of slots, each one exchange in flight,
//! found again from the transaction id of a reply.
//!
//! The xid encodes the slot (low bits) and a per-slot generation (high bits), so a reply is
//! matched in O(1) without a hash map, and a late reply to an exchange that already timed out
//! (whose slot was reused) is recognised as stale instead of completing the wrong exchange. The
//! table is allocated once with the configured window; starting an exchange when every slot is
//! busy fails and the caller counts it.

/// Where an exchange stands: which reply it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Free,
    /// DISCOVER sent, waiting for the OFFER.
    Discover,
    /// REQUEST (selecting) sent, waiting for the ACK.
    Request,
    /// REQUEST (renewing) sent, waiting for the ACK.
    Renew,
    /// A frame sent to an echo responder, waiting for it to come back.
    Echo,
}

#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub stage: Stage,
    pub xid: u32,
    pub client: u32,
    /// When the exchange started (first message sent), monotonic ns.
    pub start_ns: u64,
    /// When its latest message was sent: timeouts count from here.
    pub sent_ns: u64,
    /// Counted in the measurement (started after the warm-up).
    pub measured: bool,
}

const FREE: Slot = Slot {
    stage: Stage::Free,
    xid: 0,
    client: 0,
    start_ns: 0,
    sent_ns: 0,
    measured: false,
};

/// Why a reply did not match an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// No exchange has this xid (a reply after its exchange timed out, or not ours).
    Unknown,
    /// The exchange exists but waits for another message (a duplicate reply).
    WrongStage,
}

pub struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    bits: u32,
    /// Width of the xid: 32 for DHCPv4, 24 for DHCPv6's transaction id.
    xid_mask: u32,
    generation: Vec<u32>,
    busy: usize,
    /// Where the next incremental expiry scan starts.
    cursor: usize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("capacity", &self.slots.len())
            .field("busy", &self.busy)
            .finish()
    }
}

impl Table {
    /// A table of `capacity` slots, rounded up to a power of two (at most 2^24, so that 8 bits
    /// of generation remain in the xid).
    pub fn new(capacity: usize) -> Table {
        Table::with_xid_bits(capacity, 32)
    }

    /// A table whose xids fit in `xid_bits` bits (24 for DHCPv6); the capacity is capped so that 8
    /// bits of generation remain (2^16 slots with 24-bit xids).
    pub fn with_xid_bits(capacity: usize, xid_bits: u32) -> Table {
        let xid_bits = xid_bits.clamp(9, 32);
        let cap = capacity.clamp(1, 1 << (xid_bits - 8)).next_power_of_two();
        let bits = cap.trailing_zeros();
        Table {
            xid_mask: if xid_bits == 32 {
                u32::MAX
            } else {
                (1u32 << xid_bits) - 1
            },
            slots: vec![FREE; cap],
            // Pop order: slot 0 first.
            free: (0..cap as u32).rev().collect(),
            bits,
            generation: vec![0; cap],
            busy: 0,
            cursor: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Exchanges in flight.
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Starts an exchange; returns its slot index and xid, or None when every slot is busy.
    pub fn start(
        &mut self,
        client: u32,
        stage: Stage,
        now_ns: u64,
        measured: bool,
    ) -> Option<(u32, u32)> {
        let i = self.free.pop()?;
        let g = &mut self.generation[i as usize];
        *g = g.wrapping_add(1);
        let xid = if self.bits >= 32 {
            i
        } else {
            ((*g << self.bits) | i) & self.xid_mask
        };
        self.slots[i as usize] = Slot {
            stage,
            xid,
            client,
            start_ns: now_ns,
            sent_ns: now_ns,
            measured,
        };
        self.busy += 1;
        Some((i, xid))
    }

    /// The exchange a reply with `xid` answers, if it waits for a reply at `expected` stages.
    pub fn find(&self, xid: u32, expected: &[Stage]) -> Result<u32, Mismatch> {
        let mask = if self.bits >= 32 {
            u32::MAX
        } else {
            (1u32 << self.bits) - 1
        };
        let i = xid & mask;
        let s = self.slots.get(i as usize).ok_or(Mismatch::Unknown)?;
        if s.stage == Stage::Free || s.xid != xid {
            return Err(Mismatch::Unknown);
        }
        if !expected.contains(&s.stage) {
            return Err(Mismatch::WrongStage);
        }
        Ok(i)
    }

    pub fn get(&self, slot: u32) -> &Slot {
        &self.slots[slot as usize]
    }

    /// Moves an exchange to its next stage (same xid: DHCP keeps it across DORA).
    pub fn advance(&mut self, slot: u32, stage: Stage, now_ns: u64) {
        let s = &mut self.slots[slot as usize];
        s.stage = stage;
        s.sent_ns = now_ns;
    }

    /// Ends an exchange and frees its slot; returns it as it was.
    pub fn finish(&mut self, slot: u32) -> Slot {
        let s = std::mem::replace(&mut self.slots[slot as usize], FREE);
        if s.stage != Stage::Free {
            self.busy -= 1;
            self.free.push(slot);
        }
        s
    }

    /// Like [`Table::expire`] but looks at only `count` slots, continuing where the previous
    /// call stopped: a large open-loop table is swept a slice per millisecond instead of whole
    /// (which would cost megabytes of memory traffic every millisecond).
    pub fn expire_some(
        &mut self,
        now_ns: u64,
        timeout_ns: u64,
        count: usize,
        on_drop: &mut dyn FnMut(&Slot),
    ) -> usize {
        let cap = self.slots.len();
        let mut n = 0;
        for _ in 0..count.min(cap) {
            let i = self.cursor;
            self.cursor = if i + 1 == cap { 0 } else { i + 1 };
            let s = self.slots[i];
            if s.stage != Stage::Free && now_ns.saturating_sub(s.sent_ns) >= timeout_ns {
                on_drop(&s);
                self.finish(i as u32);
                n += 1;
            }
        }
        n
    }

    /// Ends every exchange whose latest message is older than `timeout_ns`, calling `on_drop`
    /// for each. Returns how many.
    pub fn expire(
        &mut self,
        now_ns: u64,
        timeout_ns: u64,
        on_drop: &mut dyn FnMut(&Slot),
    ) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s.stage != Stage::Free && now_ns.saturating_sub(s.sent_ns) >= timeout_ns {
                on_drop(&s);
                self.finish(i as u32);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_find_their_exchange_by_xid() {
        let mut t = Table::new(4);
        let (a, xa) = t.start(10, Stage::Discover, 100, true).unwrap();
        let (b, xb) = t.start(11, Stage::Discover, 100, true).unwrap();
        assert_ne!(xa, xb);
        assert_eq!(t.find(xb, &[Stage::Discover]), Ok(b));
        assert_eq!(t.get(b).client, 11);
        assert_eq!(t.find(xa, &[Stage::Request]), Err(Mismatch::WrongStage));
        t.advance(a, Stage::Request, 200);
        assert_eq!(t.find(xa, &[Stage::Request]), Ok(a));
        assert_eq!(
            t.find(xa ^ 0x8000_0000, &[Stage::Request]),
            Err(Mismatch::Unknown)
        );
        assert_eq!(t.finish(a).client, 10);
        assert_eq!(
            t.find(xa, &[Stage::Request]),
            Err(Mismatch::Unknown),
            "finished exchange no longer matches"
        );
        assert_eq!(t.busy(), 1);
    }

    #[test]
    fn a_late_reply_does_not_match_the_slots_next_exchange() {
        let mut t = Table::new(1);
        let (s, old) = t.start(1, Stage::Discover, 0, true).unwrap();
        t.finish(s);
        let (s2, new) = t.start(2, Stage::Discover, 0, true).unwrap();
        assert_eq!(s, s2);
        assert_ne!(old, new);
        assert_eq!(t.find(old, &[Stage::Discover]), Err(Mismatch::Unknown));
        assert_eq!(t.find(new, &[Stage::Discover]), Ok(s2));
    }

    #[test]
    fn narrow_xids_keep_within_their_width_and_still_tell_generations_apart() {
        let mut t = Table::with_xid_bits(1 << 20, 24);
        assert_eq!(t.capacity(), 1 << 16, "8 bits of generation remain");
        let mut seen = Vec::new();
        for round in 0..300u32 {
            // The freed slot is reused first: the same slot, one generation later each time.
            let (s, x) = t.start(round, Stage::Discover, 0, true).unwrap();
            assert!(x < 1 << 24, "xid {x:#x} wider than 24 bits");
            assert_eq!(t.find(x, &[Stage::Discover]), Ok(s));
            seen.push(x);
            t.finish(s);
        }
        assert_ne!(seen[0], seen[255]);
        assert_eq!(
            seen[0], seen[256],
            "the generation wraps after 256 uses of a slot"
        );
    }

    #[test]
    fn window_is_bounded_and_expiry_frees_slots() {
        let mut t = Table::new(3); // rounds to 4
        assert_eq!(t.capacity(), 4);
        for i in 0..4 {
            assert!(t.start(i, Stage::Discover, i as u64 * 10, true).is_some());
        }
        assert!(
            t.start(9, Stage::Discover, 0, true).is_none(),
            "full table refuses"
        );
        let mut dropped = Vec::new();
        // Slots sent at 0 and 10 are at least 25 ns old at t=35.
        let n = t.expire(35, 25, &mut |s| dropped.push(s.client));
        assert_eq!(n, 2);
        assert_eq!(dropped, vec![0, 1]);
        assert_eq!(t.busy(), 2);
        assert!(t.start(9, Stage::Discover, 40, true).is_some());
    }

    #[test]
    fn incremental_expiry_sweeps_the_whole_table_in_slices() {
        let mut t = Table::new(8);
        for i in 0..8 {
            t.start(i, Stage::Discover, 0, true).unwrap();
        }
        let mut dropped = Vec::new();
        assert_eq!(
            t.expire_some(100, 50, 3, &mut |s| dropped.push(s.client)),
            3
        );
        assert_eq!(
            t.expire_some(100, 50, 3, &mut |s| dropped.push(s.client)),
            3
        );
        assert_eq!(
            t.expire_some(100, 50, 3, &mut |s| dropped.push(s.client)),
            2,
            "wraps around"
        );
        dropped.sort_unstable();
        assert_eq!(dropped, (0..8).collect::<Vec<_>>());
        assert_eq!(t.busy(), 0);
    }
}
