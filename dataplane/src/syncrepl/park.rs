//! Parked replies of one worker (sans-IO): replies that changed a lease, held until the HA peers
//! acknowledged the journal entries of that change, dropped when they cannot be.
//!
//! A reply is parked with a *ticket*: the number of changes its worker had pushed to its journal
//! queue once this packet's changes were pushed. The journal thread drains each worker's queue in
//! order and reports, per worker, "your first N pushes are written, all at sequence numbers ≤ S"
//! ([`View::pushes_written`], [`View::seq_bound`]). When a reply's ticket is covered it is stamped
//! with that S (an upper bound of its own entries' sequence numbers) and released once the peers'
//! acknowledged sequence ([`View::acked_seq`], from the gate) reaches it. Tickets, stamps and
//! deadlines all grow from the front to the back of the queue, so every decision is taken at the
//! front: O(1) per reply, no search.
//!
//! The queue is a ring of fixed capacity, allocated once: parking never allocates, and a full
//! queue refuses (the caller drops the reply and counts it, as Kea does past
//! `parked-packet-limit`). The items are whatever the backend needs to send the reply later (a
//! UMEM frame on AF_XDP, a buffer slot on the socket backend).

use std::collections::VecDeque;

/// What the queue needs to know, read between packets (gate words and the worker's journal
/// write progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct View {
    /// Control says replies must wait (a peer that must acknowledge is being updated).
    pub waiting: bool,
    /// Peers that must acknowledge have acknowledged every journal sequence ≤ this.
    pub acked_seq: u64,
    /// Bumped by control when such a peer failed an update.
    pub fail_gen: u64,
    /// This worker's pushes written to the journal so far.
    pub pushes_written: u64,
    /// Every one of those pushes has a journal sequence ≤ this.
    pub seq_bound: u64,
}

/// What becomes of a parked reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The peers acknowledged the change: send the reply.
    Send,
    /// Not acknowledged within the deadline: drop.
    DropTimeout,
    /// A peer failed an update, or control stopped waiting (partner down, communication
    /// interrupted): drop, as Kea drops a parked packet whose lease update failed.
    DropFailed,
}

struct Parked<T> {
    ticket: u64,
    /// Journal sequence bound once the ticket is written; 0 before.
    seq: u64,
    deadline_ns: u64,
    fail_gen: u64,
    item: T,
}

/// One worker's parked replies.
pub struct ParkQueue<T> {
    q: VecDeque<Parked<T>>,
    cap: usize,
    /// Entries at the front that already carry their sequence bound.
    stamped: usize,
    timeout_ns: u64,
}

impl<T> ParkQueue<T> {
    /// A queue of at most `cap` replies (at least 1), each waiting at most `timeout_ns`.
    pub fn new(cap: usize, timeout_ns: u64) -> ParkQueue<T> {
        let cap = cap.max(1);
        ParkQueue {
            q: VecDeque::with_capacity(cap),
            cap,
            stamped: 0,
            timeout_ns,
        }
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Park a reply. `ticket` is the worker's push count after this packet's changes; `fail_gen`
    /// the gate's failure generation now. `Err(item)` when the queue is full.
    pub fn park(&mut self, ticket: u64, now_ns: u64, fail_gen: u64, item: T) -> Result<(), T> {
        if self.q.len() >= self.cap {
            return Err(item);
        }
        // Never reallocates: len < cap == the capacity reserved at construction.
        self.q.push_back(Parked {
            ticket,
            seq: 0,
            deadline_ns: now_ns.saturating_add(self.timeout_ns),
            fail_gen,
            item,
        });
        Ok(())
    }

    /// Decide what can be decided now; `out` gets every reply leaving the queue, in order.
    pub fn poll(&mut self, now_ns: u64, v: &View, mut out: impl FnMut(T, Verdict)) {
        // Stamp the replies whose changes the journal has written.
        while self.stamped < self.q.len() {
            let p = &mut self.q[self.stamped];
            if p.ticket > v.pushes_written {
                break;
            }
            p.seq = v.seq_bound;
            self.stamped += 1;
        }
        while let Some(front) = self.q.front() {
            let verdict = if !v.waiting || front.fail_gen != v.fail_gen {
                Verdict::DropFailed
            } else if self.stamped > 0 && front.seq <= v.acked_seq {
                Verdict::Send
            } else if now_ns >= front.deadline_ns {
                Verdict::DropTimeout
            } else {
                return;
            };
            let Some(p) = self.q.pop_front() else { return };
            self.stamped = self.stamped.saturating_sub(1);
            out(p.item, verdict);
        }
    }

    /// Drop everything (shutdown).
    pub fn drain(&mut self, mut out: impl FnMut(T)) {
        self.stamped = 0;
        while let Some(p) = self.q.pop_front() {
            out(p.item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn view(acked: u64, pushes: u64, bound: u64) -> View {
        View {
            waiting: true,
            acked_seq: acked,
            fail_gen: 0,
            pushes_written: pushes,
            seq_bound: bound,
        }
    }

    fn poll(q: &mut ParkQueue<u32>, now: u64, v: &View) -> Vec<(u32, Verdict)> {
        let mut out = Vec::new();
        q.poll(now, v, |i, d| out.push((i, d)));
        out
    }

    #[test]
    fn released_only_once_the_written_entries_are_acked() {
        let mut q = ParkQueue::new(8, 1000 * MS);
        q.park(1, 0, 0, 10).unwrap();
        q.park(3, 0, 0, 11).unwrap(); // a packet with two changes
                                      // Nothing written yet: even a high acked seq releases nothing (the seq is unknown).
        assert!(poll(&mut q, 1, &view(1000, 0, 0)).is_empty());
        // Push 1 written at seq ≤ 50; acked 49: wait.
        assert!(poll(&mut q, 2, &view(49, 1, 50)).is_empty());
        // Acked 50: the first goes; the second is not written yet.
        assert_eq!(poll(&mut q, 3, &view(50, 1, 50)), vec![(10, Verdict::Send)]);
        // Pushes 2..3 written at ≤ 60; acked jumps to 70 at once.
        assert_eq!(poll(&mut q, 4, &view(70, 3, 60)), vec![(11, Verdict::Send)]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_stamp_is_not_moved_by_later_batches() {
        // Stamped at 50 while acked lags; later batches raise the bound. The reply must go when 50
        // is acked, not wait for the newest batch (else it would starve under steady load).
        let mut q = ParkQueue::new(8, 1000 * MS);
        q.park(1, 0, 0, 1).unwrap();
        assert!(poll(&mut q, 1, &view(10, 1, 50)).is_empty());
        q.park(2, 1, 0, 2).unwrap();
        assert_eq!(poll(&mut q, 2, &view(50, 2, 90)), vec![(1, Verdict::Send)]);
        assert_eq!(q.len(), 1);
        assert_eq!(poll(&mut q, 3, &view(90, 2, 120)), vec![(2, Verdict::Send)]);
    }

    #[test]
    fn deadline_drops_in_order() {
        let mut q = ParkQueue::new(8, 5 * MS);
        q.park(1, 0, 0, 1).unwrap();
        q.park(2, 2 * MS, 0, 2).unwrap();
        let v = view(0, 2, 10);
        assert!(poll(&mut q, 4 * MS, &v).is_empty());
        assert_eq!(poll(&mut q, 5 * MS, &v), vec![(1, Verdict::DropTimeout)]);
        assert_eq!(poll(&mut q, 7 * MS, &v), vec![(2, Verdict::DropTimeout)]);
    }

    #[test]
    fn partner_failure_drops_what_waits_but_not_what_comes_after() {
        let mut q = ParkQueue::new(8, 1000 * MS);
        q.park(1, 0, 0, 1).unwrap();
        q.park(2, 0, 0, 2).unwrap();
        let mut v = view(0, 0, 0);
        v.fail_gen = 1;
        assert_eq!(
            poll(&mut q, 1, &v),
            vec![(1, Verdict::DropFailed), (2, Verdict::DropFailed)]
        );
        q.park(3, 2, 1, 3).unwrap();
        let v = View {
            fail_gen: 1,
            ..view(100, 3, 100)
        };
        assert_eq!(poll(&mut q, 3, &v), vec![(3, Verdict::Send)]);
    }

    #[test]
    fn waiting_off_drops_everything() {
        let mut q = ParkQueue::new(8, 1000 * MS);
        q.park(1, 0, 0, 1).unwrap();
        let v = View {
            waiting: false,
            ..view(0, 1, 5)
        };
        assert_eq!(poll(&mut q, 1, &v), vec![(1, Verdict::DropFailed)]);
    }

    #[test]
    fn full_queue_refuses_and_never_grows() {
        let mut q = ParkQueue::new(2, 1000 * MS);
        let cap = q.q.capacity();
        q.park(1, 0, 0, 1).unwrap();
        q.park(2, 0, 0, 2).unwrap();
        assert_eq!(q.park(3, 0, 0, 3), Err(3));
        assert_eq!(q.q.capacity(), cap);
        assert_eq!(poll(&mut q, 1, &view(5, 2, 5)).len(), 2);
        q.park(4, 2, 0, 4).unwrap();
        assert_eq!(q.q.capacity(), cap);
    }

    #[test]
    fn mixed_stamped_and_unstamped_front_keeps_count() {
        let mut q = ParkQueue::new(8, 1000 * MS);
        for t in 1..=4 {
            q.park(t, 0, 0, t as u32).unwrap();
        }
        assert!(poll(&mut q, 1, &view(0, 2, 20)).is_empty()); // 2 stamped at 20
        assert_eq!(
            poll(&mut q, 2, &view(20, 2, 20)),
            vec![(1, Verdict::Send), (2, Verdict::Send)]
        );
        // The other two are stamped only now, at 30.
        assert!(poll(&mut q, 3, &view(25, 4, 30)).is_empty());
        assert_eq!(poll(&mut q, 4, &view(30, 4, 30)).len(), 2);
    }
}
