//! A bounded single-producer single-consumer queue for the lease journal: one worker pushes its
//! lease changes, the journal thread pops them.
//!
//! Why not crossbeam's `ArrayQueue` (used before) or `rtrb`: at 300,000 changes/s the ring of
//! 65,536 ~170-byte entries (11 MB, room for bursts while the journal thread sleeps) is far larger
//! than the worker core's L2, so every push started with write misses on the slot's three cache
//! lines: `ArrayQueue::push` was 44 ns per DORA, the largest single cost of persistence in the
//! worker's profile. Neither queue exposes where its next slots are; this one prefetches the slot
//! a few pushes ahead, so its lines are in cache by the time they are written. Being SPSC it also
//! needs no compare-and-swap: each side owns one index and reads the other's only when its cached
//! copy says the queue is full (producer) or empty (consumer).
//!
//! Soundness rests on the single producer and single consumer: [`Spsc::push`] must only ever be
//! called from one thread at a time, and [`Spsc::pop`] likewise (the journal enforces it: its
//! producer handle is `!Sync` and owns the only push side; only the journal thread pops).

use crossbeam_utils::CachePadded;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many slots ahead of the next push to prefetch: far enough for the misses to complete
/// (a few hundred ns at the producer's rate), near enough to stay in L1/L2.
const PREFETCH_AHEAD: usize = 4;

pub(crate) struct Spsc<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// `slots.len() - 1`; the buffer length is a power of two.
    mask: usize,
    capacity: usize,
    /// Next position to pop (written by the consumer only).
    head: CachePadded<AtomicUsize>,
    /// Next position to push (written by the producer only).
    tail: CachePadded<AtomicUsize>,
    /// The producer's last view of `head` and the consumer's of `tail` (each touched by its
    /// owner only; atomics merely to keep the type `Sync`).
    producer_head: CachePadded<AtomicUsize>,
    consumer_tail: CachePadded<AtomicUsize>,
}

// SAFETY: values move between the producer and consumer threads (`T: Send`); a slot is accessed
// by one side at a time, handed over by the Release/Acquire pairs on `tail` (push → pop) and
// `head` (pop → push).
unsafe impl<T: Send> Sync for Spsc<T> {}
// SAFETY: as above; the queue owns its values.
unsafe impl<T: Send> Send for Spsc<T> {}

impl<T> Spsc<T> {
    /// A queue holding at most `capacity` (≥ 1) values.
    pub(crate) fn new(capacity: usize) -> Spsc<T> {
        let capacity = capacity.max(1);
        let len = capacity.next_power_of_two();
        Spsc {
            slots: (0..len)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: len - 1,
            capacity,
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            producer_head: CachePadded::new(AtomicUsize::new(0)),
            consumer_tail: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values queued (exact on the producer's and consumer's own threads, a snapshot elsewhere).
    pub(crate) fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `v`, or gives it back when the queue is full. Producer side only.
    #[inline]
    pub(crate) fn push(&self, v: T) -> Result<(), T> {
        let tail = self.tail.load(Ordering::Relaxed);
        let mut head = self.producer_head.load(Ordering::Relaxed);
        if tail.wrapping_sub(head) >= self.capacity {
            head = self.head.load(Ordering::Acquire);
            self.producer_head.store(head, Ordering::Relaxed);
            if tail.wrapping_sub(head) >= self.capacity {
                return Err(v);
            }
        }
        let slot = self.slots[tail & self.mask].get();
        // SAFETY: positions in head..tail belong to the consumer; `tail` is outside (the queue is
        // not full) and the consumer released it (Acquire on `head` above, or earlier).
        unsafe { (*slot).write(v) };
        // Every cache line of the slot a few pushes ahead (a slot spans several).
        let ahead = self.slots[tail.wrapping_add(PREFETCH_AHEAD) & self.mask]
            .get()
            .cast::<u8>();
        for off in (0..std::mem::size_of::<T>()).step_by(64) {
            crate::prefetch::write(ahead.wrapping_add(off));
        }
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Takes the oldest value. Consumer side only.
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        let head = self.head.load(Ordering::Relaxed);
        let mut tail = self.consumer_tail.load(Ordering::Relaxed);
        if head == tail {
            tail = self.tail.load(Ordering::Acquire);
            self.consumer_tail.store(tail, Ordering::Relaxed);
            if head == tail {
                return None;
            }
        }
        let slot = self.slots[head & self.mask].get();
        // SAFETY: `head` is in head..tail: the producer wrote it and published it (Release on
        // `tail`, read with Acquire above or earlier); reading moves the value out once.
        let v = unsafe { (*slot).assume_init_read() };
        self.head.store(head.wrapping_add(1), Ordering::Release);
        Some(v)
    }
}

impl<T> Drop for Spsc<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn holds_exactly_its_capacity_in_order() {
        let q = Spsc::new(3);
        for i in 0..3 {
            q.push(i).unwrap();
        }
        assert_eq!(q.push(9), Err(9));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(0));
        q.push(3).unwrap();
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(1), Some(2), Some(3), None)
        );
        assert!(q.is_empty());
    }

    #[test]
    fn drops_what_is_left() {
        let v = Arc::new(());
        let q = Spsc::new(8);
        for _ in 0..5 {
            q.push(v.clone()).unwrap();
        }
        q.pop();
        drop(q);
        assert_eq!(Arc::strong_count(&v), 1);
    }

    #[test]
    fn two_threads_pass_every_value_once_in_order() {
        const N: u64 = 1_000_000;
        let q = Arc::new(Spsc::new(1000));
        let p = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while i < N {
                    if q.push(Box::new(i)).is_ok() {
                        i += 1;
                    } else {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        let mut want = 0;
        while want < N {
            if let Some(v) = q.pop() {
                assert_eq!(*v, want);
                want += 1;
            }
        }
        p.join().unwrap();
        assert!(q.pop().is_none());
    }
}
