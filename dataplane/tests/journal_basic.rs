//! Journal basics: every change variant round-trips, group commit from several producer threads,
//! queue-full behaviour, fsync policies, torn tails at every byte offset, mid-file corruption,
//! the replication reader.

mod journal_util;

use journal_util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xdhcp_config::model::FsyncPolicy;
use xdhcp_dataplane::lease::journal::{
    decode_change, encode_change, read_state, Journal, JournalConfig, JournalError, JournalReader,
};
use xdhcp_dataplane::lease::types::{Lease6Type, LeaseChange};

const T: Duration = Duration::from_secs(10);

fn cfg(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir)
}

fn all_variants() -> Vec<LeaseChange> {
    vec![
        LeaseChange::Put4(lease4(1, 1_700_000_000)),
        LeaseChange::Put4(lease4(2, 1_700_000_001)),
        LeaseChange::Put4(lease4(3, 1_700_000_002)),
        LeaseChange::Del4(v4(2)),
        LeaseChange::Put6(lease6(4, 1_700_000_003)),
        LeaseChange::Put6(lease6(5, 1_700_000_004)),
        LeaseChange::Put6(lease6(6, 1_700_000_005)),
        LeaseChange::Del6(v6(5), Lease6Type::Na),
        // A delete of the wrong type leaves the lease alone.
        LeaseChange::Del6(v6(6), Lease6Type::Pd),
        LeaseChange::Put4(lease4(1, 1_800_000_000)),
    ]
}

#[test]
fn codec_round_trips_every_variant() {
    for (i, c) in all_variants().into_iter().enumerate() {
        let mut buf = Vec::new();
        encode_change(&mut buf, 1000 + i as u64, &c);
        let (v, back) = decode_change(&buf).expect("decodes");
        assert_eq!(v, 1000 + i as u64);
        assert_eq!(back, c);
        // Every strict prefix is rejected, never a panic.
        for cut in 0..buf.len() {
            assert!(
                decode_change(&buf[..cut]).is_err(),
                "prefix {cut} of {c:?} decoded"
            );
        }
    }
}

#[test]
fn changes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let (j, r) = Journal::open(cfg(dir.path())).unwrap();
        assert!(r.leases4.is_empty() && r.leases6.is_empty());
        assert_eq!(r.last_seq, 0);
        let p = j.producer();
        for c in all_variants() {
            model.apply(&c);
            p.try_push(c).unwrap();
        }
        assert_eq!(j.flush_blocking(T).unwrap(), 10);
        assert_eq!(j.shutdown().unwrap(), 10);
    }
    let (j, r) = Journal::open(cfg(dir.path())).unwrap();
    assert_eq!(r.last_seq, 10);
    assert_eq!(r.leases4, model.leases4());
    assert_eq!(r.leases6, model.leases6());
    // Sequence numbers continue after a restart.
    let p = j.producer();
    p.try_push(LeaseChange::Del4(v4(1))).unwrap();
    assert_eq!(j.flush_blocking(T).unwrap(), 11);
    drop(p);
    drop(j);
    let r = read_state(dir.path(), false).unwrap();
    assert_eq!(r.last_seq, 11);
    assert_eq!(r.leases4.len(), model.v4.len() - 1);
}

#[test]
fn second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_j, _) = Journal::open(cfg(dir.path())).unwrap();
    match Journal::open(cfg(dir.path())) {
        Err(JournalError::Locked { .. }) => {}
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn group_commit_from_several_producer_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.queue_capacity = 1024;
    c.fsync = FsyncPolicy::EveryBatch;
    let (j, _) = Journal::open(c).unwrap();
    const THREADS: u32 = 4;
    const PER: u32 = 20_000;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let p = j.producer();
            s.spawn(move || {
                for i in 0..PER {
                    push_all(&p, LeaseChange::Put4(lease4(t * PER + i, u64::from(i))));
                }
            });
        }
    });
    let total = u64::from(THREADS * PER);
    assert_eq!(j.flush_blocking(T).unwrap(), total);
    let st = j.stats();
    assert_eq!(st.records, total);
    assert_eq!(st.written_seq, total);
    assert_eq!(st.durable_seq, total);
    assert!(
        st.batches < total / 4,
        "no group commit: {} batches for {total} records",
        st.batches
    );
    assert!(
        st.fsyncs >= 1 && st.fsyncs <= st.batches + 2,
        "fsyncs {} batches {}",
        st.fsyncs,
        st.batches
    );
    drop(j);
    let r = read_state(dir.path(), false).unwrap();
    assert_eq!(r.leases4.len(), (THREADS * PER) as usize);
    for l in &r.leases4 {
        let i = u32::from(l.addr) - 0x0a00_0000;
        assert_eq!(*l, lease4(i, u64::from(i % PER)));
    }
}

/// A journal whose thread sleeps through the test unless a producer wakes it (`wake`: when its
/// queue of `capacity` passes half full), with the thread already asleep.
fn sleeping_journal(dir: &Path, capacity: usize, wake: bool) -> Journal {
    let mut c = cfg(dir);
    c.queue_capacity = capacity;
    c.idle_park = Duration::from_secs(20);
    c.wake_when_half_full = wake;
    let (j, _) = Journal::open(c).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    j
}

#[test]
fn full_queue_returns_the_change_and_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let j = sleeping_journal(dir.path(), 4, false);
    let p = j.producer();
    for i in 0..4 {
        assert!(p.has_room());
        p.try_push(LeaseChange::Put4(lease4(i, 1))).unwrap();
    }
    assert!(!p.has_room());
    let change = LeaseChange::Put4(lease4(99, 1));
    let t0 = Instant::now();
    let back = p.try_push(change.clone()).unwrap_err();
    assert!(t0.elapsed() < Duration::from_millis(50));
    assert_eq!(back, change, "the refused change comes back intact");
    assert_eq!(p.rejected(), 1);
    assert_eq!(j.stats().rejected, 1);
    assert_eq!(j.flush_blocking(T).unwrap(), 4);
    assert!(p.has_room());
    p.try_push(back).unwrap();
    assert_eq!(j.flush_blocking(T).unwrap(), 5);
}

#[test]
fn a_queue_past_half_full_wakes_the_sleeping_writer() {
    let dir = tempfile::tempdir().unwrap();
    // Without the producers' wake-up nothing would be written for 20 s.
    let j = sleeping_journal(dir.path(), 64, true);
    let p = j.producer();
    // Below half full the writer is left asleep (no system call per change)...
    for i in 0..31 {
        assert!(p.has_room());
        p.try_push(LeaseChange::Put4(lease4(i, 1))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(j.written_seq(), 0, "woken below half full");
    // ...past it, the engine's room check (made before every change) wakes it.
    for i in 31..40 {
        assert!(p.has_room());
        p.try_push(LeaseChange::Put4(lease4(i, 1))).unwrap();
    }
    assert!(p.has_room());
    wait_until("the woken writer wrote the queue", || j.written_seq() >= 33);
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn fsync_policies() {
    // Never: durable as soon as written, no fsync on the data path.
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.fsync = FsyncPolicy::Never;
    let (j, _) = Journal::open(c).unwrap();
    let p = j.producer();
    for i in 0..1000 {
        push_all(&p, LeaseChange::Put4(lease4(i, 1)));
    }
    wait_until("written 1000", || j.written_seq() == 1000);
    assert_eq!(j.durable_seq(), 1000);
    assert_eq!(j.stats().fsyncs, 0);
    drop(p);
    drop(j);

    // EveryBatch: durable only after the fsync of each batch.
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.fsync = FsyncPolicy::EveryBatch;
    let (j, _) = Journal::open(c).unwrap();
    let p = j.producer();
    for i in 0..1000 {
        push_all(&p, LeaseChange::Put4(lease4(i, 1)));
    }
    wait_until("durable 1000", || j.durable_seq() == 1000);
    let st = j.stats();
    assert!(
        st.fsyncs >= 1 && st.fsyncs == st.batches,
        "fsyncs {} batches {}",
        st.fsyncs,
        st.batches
    );
    drop(p);
    drop(j);

    // IntervalMs: written at once, durable at the next periodic fsync.
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.fsync = FsyncPolicy::IntervalMs(300);
    let (j, _) = Journal::open(c).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    let p = j.producer();
    let p1 = Instant::now();
    p.try_push(LeaseChange::Put4(lease4(1, 1))).unwrap();
    wait_until("written 1", || j.written_seq() == 1);
    // The first batch after a long pause is synced immediately (the interval has elapsed)...
    wait_until("durable 1", || j.durable_seq() == 1);
    p.try_push(LeaseChange::Put4(lease4(2, 1))).unwrap();
    wait_until("written 2", || j.written_seq() == 2);
    // ...the next one waits for the interval, which started no earlier than the first push.
    if p1.elapsed() < Duration::from_millis(280) {
        assert_eq!(j.durable_seq(), 1, "synced before the interval elapsed");
    }
    wait_until("durable 2", || j.durable_seq() == 2);
    assert_eq!(j.stats().fsyncs, 2);
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xjl"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records in a segment (format knowledge: 24-byte file header, 16-byte record
/// header whose first u32 is the payload length).
fn record_offsets(buf: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut off = 24;
    while off < buf.len() {
        v.push(off);
        let len = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        off += 16 + len;
    }
    assert_eq!(off, buf.len());
    v
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn torn_last_record_at_every_byte_offset_is_cut_and_the_rest_kept() {
    let src = tempfile::tempdir().unwrap();
    let changes = all_variants();
    let mut before_last = Model::default();
    {
        let (j, _) = Journal::open(cfg(src.path())).unwrap();
        let p = j.producer();
        for (i, c) in changes.iter().enumerate() {
            if i + 1 < changes.len() {
                before_last.apply(c);
            }
            p.try_push(c.clone()).unwrap();
        }
        j.flush_blocking(T).unwrap();
    }
    let segs = segment_files(src.path());
    let seg = segs
        .iter()
        .find(|p| fs::metadata(p).unwrap().len() > 24)
        .unwrap()
        .clone();
    let buf = fs::read(&seg).unwrap();
    let offs = record_offsets(&buf);
    assert_eq!(offs.len(), changes.len());
    let last = *offs.last().unwrap();
    for cut in last..buf.len() {
        let d = tempfile::tempdir().unwrap();
        copy_dir(src.path(), d.path());
        // Keep only the torn segment: the empty one the second run started would not exist if
        // the crash had happened mid-write.
        for s in segment_files(d.path()) {
            if s.file_name() != seg.file_name() {
                fs::remove_file(s).unwrap();
            }
        }
        let p = d.path().join(seg.file_name().unwrap());
        fs::write(&p, &buf[..cut]).unwrap();
        let (j, r) = Journal::open(cfg(d.path())).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(r.last_seq, changes.len() as u64 - 1, "cut at {cut}");
        assert_eq!(r.leases4, before_last.leases4(), "cut at {cut}");
        assert_eq!(r.leases6, before_last.leases6(), "cut at {cut}");
        assert_eq!(r.report.truncated_bytes, (cut - last) as u64);
        assert_eq!(
            fs::metadata(&p).unwrap().len(),
            last as u64,
            "torn tail truncated"
        );
        // The journal goes on from there.
        let pr = j.producer();
        pr.try_push(LeaseChange::Del4(v4(1))).unwrap();
        assert_eq!(j.flush_blocking(T).unwrap(), changes.len() as u64);
    }
    // Garbage instead of a clean cut: the last record's checksum fails and nothing valid follows.
    let d = tempfile::tempdir().unwrap();
    copy_dir(src.path(), d.path());
    let p = d.path().join(seg.file_name().unwrap());
    let mut b = buf.clone();
    let n = b.len();
    b[n - 3] ^= 0xff;
    fs::write(&p, &b).unwrap();
    let (_j, r) = Journal::open(cfg(d.path())).unwrap();
    assert_eq!(r.leases4, before_last.leases4());
}

#[test]
fn corruption_in_the_middle_is_an_error_with_file_and_offset_unless_salvaging() {
    let src = tempfile::tempdir().unwrap();
    let changes = all_variants();
    {
        let (j, _) = Journal::open(cfg(src.path())).unwrap();
        let p = j.producer();
        for c in &changes {
            p.try_push(c.clone()).unwrap();
        }
        j.flush_blocking(T).unwrap();
    }
    let seg = segment_files(src.path())
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() > 24)
        .unwrap();
    let mut buf = fs::read(&seg).unwrap();
    let offs = record_offsets(&buf);
    // Flip a payload byte of record #3 (0-based 2).
    buf[offs[2] + 20] ^= 0x55;
    fs::write(&seg, &buf).unwrap();
    match Journal::open(cfg(src.path())) {
        Err(JournalError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, offs[2] as u64);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    let msg = read_state(src.path(), false).unwrap_err().to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains(&offs[2].to_string()),
        "{msg}"
    );

    let mut c = cfg(src.path());
    c.salvage = true;
    let (_j, r) = Journal::open(c).unwrap();
    let mut model = Model::default();
    for (i, ch) in changes.iter().enumerate() {
        if i != 2 {
            model.apply(ch);
        }
    }
    assert_eq!(r.leases4, model.leases4());
    assert_eq!(r.leases6, model.leases6());
    assert_eq!(r.report.salvaged_bytes, (offs[3] - offs[2]) as u64);
}

#[test]
fn reader_from_seq_follows_the_tail_and_reports_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(cfg(dir.path())).unwrap();
    let p = j.producer();
    let mut sent = Vec::new();
    for i in 0..100u32 {
        let c = if i % 10 == 9 {
            LeaseChange::Del4(v4(i - 1))
        } else {
            LeaseChange::Put4(lease4(i, u64::from(i)))
        };
        sent.push(c.clone());
        p.try_push(c).unwrap();
    }
    assert_eq!(j.flush_blocking(T).unwrap(), 100);

    let mut r = JournalReader::open(dir.path(), 50).unwrap();
    let got: Vec<_> = r.by_ref().map(|e| e.unwrap()).collect();
    assert_eq!(got.len(), 51);
    for (k, e) in got.iter().enumerate() {
        assert_eq!(e.seq, 50 + k as u64);
        assert_eq!(e.change, sent[49 + k]);
    }
    // Versions order changes: increasing for one producer.
    assert!(got.windows(2).all(|w| w[0].version < w[1].version));
    assert!(r.next().is_none(), "caught up");
    // Tail following: new records show up on the same reader.
    for i in 100..110u32 {
        p.try_push(LeaseChange::Put4(lease4(i, 5))).unwrap();
    }
    j.flush_blocking(T).unwrap();
    let more: Vec<u64> = r.by_ref().map(|e| e.unwrap().seq).collect();
    assert_eq!(more, (101..=110).collect::<Vec<_>>());

    // Across a segment rotation (compaction rotates) while retaining what the peer needs.
    j.set_retain_from_seq(Some(60));
    let rep = j.compact_now().unwrap();
    assert_eq!(rep.through_seq, 110);
    assert_eq!(rep.segments_retained, 1);
    for i in 110..115u32 {
        p.try_push(LeaseChange::Put4(lease4(i, 6))).unwrap();
    }
    j.flush_blocking(T).unwrap();
    let more: Vec<u64> = r.by_ref().map(|e| e.unwrap().seq).collect();
    assert_eq!(more, (111..=115).collect::<Vec<_>>());
    let from60: Vec<u64> = JournalReader::open(dir.path(), 60)
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(from60, (60..=115).collect::<Vec<_>>());

    // Without retention the folded segments go, and a reader for them is told to full-sync.
    j.set_retain_from_seq(None);
    let rep = j.compact_now().unwrap();
    assert_eq!(rep.through_seq, 115);
    match JournalReader::open(dir.path(), 60) {
        Err(JournalError::Compacted {
            requested: 60,
            oldest: 116,
            ..
        }) => {}
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    }
    // Reading from just after the snapshot still works.
    p.try_push(LeaseChange::Del4(v4(0))).unwrap();
    j.flush_blocking(T).unwrap();
    let tail: Vec<u64> = JournalReader::open(dir.path(), 116)
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(tail, vec![116]);
}
