//! Compaction (Kea's LFC): the live state folded into one snapshot while writers keep going, a
//! crash at every step losing nothing, and change versions ordering racing producers.

mod journal_util;

use journal_util::*;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use xdhcp_dataplane::lease::journal::{read_state, CompactionCrashPoint, Journal, JournalConfig};
use xdhcp_dataplane::lease::types::{Lease6Type, LeaseChange};

const T: Duration = Duration::from_secs(10);

fn files(dir: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ext))
        .collect();
    v.sort();
    v
}

/// A mixed workload over a small key space so there are overwrites and deletes.
fn workload(round: u32, n: u32) -> Vec<LeaseChange> {
    (0..n)
        .map(|i| {
            let k = (i * 7 + round * 13) % 200;
            match i % 6 {
                0 => LeaseChange::Del4(v4(k)),
                1 => LeaseChange::Put6(lease6(k, u64::from(round * 1000 + i))),
                2 => LeaseChange::Del6(
                    v6(k),
                    if k % 4 == 0 {
                        Lease6Type::Pd
                    } else {
                        Lease6Type::Na
                    },
                ),
                _ => LeaseChange::Put4(lease4(k, u64::from(round * 1000 + i))),
            }
        })
        .collect()
}

fn assert_state(dir: &Path, model: &Model, what: &str) {
    let r = read_state(dir, false).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.leases4, model.leases4(), "{what}: v4");
    assert_eq!(r.leases6, model.leases6(), "{what}: v6");
}

#[test]
fn compaction_folds_everything_into_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let (j, _) = Journal::open(JournalConfig::new(dir.path())).unwrap();
    let p = j.producer();
    for round in 0..3 {
        for c in workload(round, 500) {
            model.apply(&c);
            push_all(&p, c);
        }
        j.flush_blocking(T).unwrap();
        let rep = j.compact_now().unwrap();
        assert_eq!(rep.through_seq, u64::from(round + 1) * 500);
        assert_eq!(rep.leases4, model.v4.len());
        assert_eq!(rep.leases6, model.v6.len());
        assert_eq!(files(dir.path(), ".xjs").len(), 1, "one snapshot");
        assert_eq!(
            files(dir.path(), ".xjl").len(),
            1,
            "only the new, empty segment"
        );
        assert_state(dir.path(), &model, "after compaction");
    }
    // Tombstones do not pile up: a key deleted long ago is not carried from snapshot to snapshot.
    let rep = j.compact_now().unwrap();
    assert_eq!(rep.tombstones, 0, "old tombstones dropped");
    drop(p);
    drop(j);
    let (_j, r) = Journal::open(JournalConfig::new(dir.path())).unwrap();
    assert_eq!(r.last_seq, 1500);
    assert_eq!(r.report.snapshot_seq, Some(1500));
    assert_eq!(r.leases4, model.leases4());
    assert_eq!(r.leases6, model.leases6());
}

#[test]
fn compaction_while_producers_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = JournalConfig::new(dir.path());
    c.fsync = xdhcp_config::model::FsyncPolicy::Never;
    c.segment_max_bytes = 64 << 10; // many segments
    let (j, _) = Journal::open(c).unwrap();
    let stop = AtomicBool::new(false);
    let models: Vec<Model> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u32)
            .map(|t| {
                let p = j.producer();
                let stop = &stop;
                s.spawn(move || {
                    // Each thread owns its own keys (a store shard), so its model is exact.
                    let mut m = Model::default();
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) || i < 20_000 {
                        let k = t * 100_000 + (i % 3000);
                        let ch = if i % 5 == 4 {
                            LeaseChange::Del4(v4(k))
                        } else {
                            LeaseChange::Put4(lease4(k, u64::from(i)))
                        };
                        m.apply(&ch);
                        push_all(&p, ch);
                        i += 1;
                    }
                    m
                })
            })
            .collect();
        let mut compactions = 0;
        while compactions < 5 {
            std::thread::sleep(Duration::from_millis(20));
            j.compact_now().unwrap();
            compactions += 1;
        }
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    j.flush_blocking(T).unwrap();
    let mut model = Model::default();
    for m in models {
        model.v4.extend(m.v4);
    }
    assert!(j.stats().compactions >= 5);
    drop(j);
    assert_state(dir.path(), &model, "after concurrent compactions");
}

#[test]
fn crash_at_every_compaction_step_loses_nothing() {
    let points = [
        CompactionCrashPoint::AfterRotate,
        CompactionCrashPoint::PartialTemp,
        CompactionCrashPoint::AfterTemp,
        CompactionCrashPoint::AfterRename,
        CompactionCrashPoint::AfterFirstDelete,
    ];
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let mut c = JournalConfig::new(dir.path());
        c.segment_max_bytes = 4 << 10; // several segments to fold
        {
            let (j, _) = Journal::open(c.clone()).unwrap();
            let p = j.producer();
            // A first, completed compaction so there is an old snapshot to replace too.
            for ch in workload(0, 300) {
                model.apply(&ch);
                push_all(&p, ch);
            }
            j.compact_now().unwrap();
            for ch in workload(1, 300) {
                model.apply(&ch);
                push_all(&p, ch);
            }
            j.flush_blocking(T).unwrap();
            assert!(j.compact_with_crash(point).is_err());
            // Writes after the interrupted compaction.
            for ch in workload(2, 50) {
                model.apply(&ch);
                push_all(&p, ch);
            }
            j.flush_blocking(T).unwrap();
            // The process "dies" here: drop without any cleanup of compaction leftovers.
        }
        match point {
            CompactionCrashPoint::PartialTemp | CompactionCrashPoint::AfterTemp => {
                assert_eq!(
                    files(dir.path(), ".tmp").len(),
                    1,
                    "{point:?} leaves a temp file"
                )
            }
            CompactionCrashPoint::AfterRename => {
                assert_eq!(
                    files(dir.path(), ".xjs").len(),
                    2,
                    "{point:?} leaves the old snapshot"
                )
            }
            CompactionCrashPoint::AfterFirstDelete => {}
            CompactionCrashPoint::AfterRotate => {}
        }
        assert_state(
            dir.path(),
            &model,
            &format!("read after crash at {point:?}"),
        );
        let (j, r) = Journal::open(c.clone()).unwrap();
        assert_eq!(r.leases4, model.leases4(), "{point:?}");
        assert_eq!(r.leases6, model.leases6(), "{point:?}");
        assert_eq!(r.last_seq, 650, "{point:?}");
        assert!(
            files(dir.path(), ".tmp").is_empty(),
            "{point:?}: temp removed on open"
        );
        assert_eq!(
            files(dir.path(), ".xjs").len(),
            1,
            "{point:?}: stale snapshot removed on open"
        );
        // And the next compaction completes normally.
        j.compact_now().unwrap();
        drop(j);
        assert_state(
            dir.path(),
            &model,
            &format!("compacted after crash at {point:?}"),
        );
    }
}

#[test]
fn versions_order_changes_that_the_journal_thread_drained_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = JournalConfig::new(dir.path());
    c.idle_park = Duration::from_secs(20);
    let (j, _) = Journal::open(c).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The journal thread drains producers in registration order: b before a.
    let b = j.producer();
    let a = j.producer();
    // The store applies: a puts X (older), then b deletes X (newer) and puts Y.
    a.try_push(LeaseChange::Put4(lease4(7, 1))).unwrap();
    b.try_push(LeaseChange::Del4(v4(7))).unwrap();
    a.try_push(LeaseChange::Put4(lease4(8, 1))).unwrap();
    b.try_push(LeaseChange::Put4(lease4(8, 2))).unwrap();
    j.flush_blocking(T).unwrap();
    // In the file, b's changes come first...
    let entries: Vec<_> = xdhcp_dataplane::lease::journal::JournalReader::open(dir.path(), 1)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(
        entries[0].change,
        LeaseChange::Del4(v4(7)),
        "drained out of order as intended"
    );
    // ...yet replay honours the order the store applied them.
    let r = read_state(dir.path(), false).unwrap();
    assert_eq!(r.leases4, vec![lease4(8, 2)]);
    j.compact_now().unwrap();
    let r = read_state(dir.path(), false).unwrap();
    assert_eq!(r.leases4, vec![lease4(8, 2)]);
}

#[test]
fn lfc_interval_compacts_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = JournalConfig::new(dir.path());
    c.compaction_interval = Some(Duration::from_millis(100));
    let (j, _) = Journal::open(c).unwrap();
    let p = j.producer();
    let mut model = Model::default();
    for ch in workload(0, 400) {
        model.apply(&ch);
        push_all(&p, ch);
    }
    j.flush_blocking(T).unwrap();
    let t0 = std::time::Instant::now();
    while j.stats().compactions < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no background compaction"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(files(dir.path(), ".xjs").len(), 1);
    drop(p);
    drop(j);
    assert_state(dir.path(), &model, "after background compaction");
}

#[test]
fn reader_cursor_files_pin_segments_up_to_a_byte_cap() {
    use xdhcp_dataplane::lease::journal::{JournalError, JournalReader};
    let dir = tempfile::tempdir().unwrap();
    let mut c = JournalConfig::new(dir.path());
    c.segment_max_bytes = 4 << 10;
    let pin = dir.path().join("control-acked-peer1.seq");
    let seqs_from = |from: u64| -> Result<Vec<u64>, JournalError> {
        JournalReader::open(dir.path(), from)?
            .map(|e| e.map(|e| e.seq))
            .collect()
    };
    {
        let (j, _) = Journal::open(c.clone()).unwrap();
        let p = j.producer();
        // Small batches, so segments rotate at their size limit.
        for (i, ch) in workload(0, 300).into_iter().enumerate() {
            push_all(&p, ch);
            if i % 10 == 9 {
                j.flush_blocking(T).unwrap();
            }
        }
        j.flush_blocking(T).unwrap();
        fs::write(&pin, "100\n").unwrap();
        let rep = j.compact_now().unwrap();
        assert!(
            rep.segments_retained > 0 && rep.segments_removed > 0,
            "{rep:?}"
        );
        assert_eq!(seqs_from(101).unwrap(), (101..=300).collect::<Vec<_>>());
        // Releasing the pin lets the next compaction drop them.
        fs::remove_file(&pin).unwrap();
        j.compact_now().unwrap();
        assert!(matches!(
            seqs_from(101),
            Err(JournalError::Compacted { .. })
        ));
        // Our own temporaries are cleaned on open; other processes' files in the dir are not.
        fs::write(dir.path().join("control-acked-peer1.tmp"), "5").unwrap();
        for ch in workload(1, 300) {
            push_all(&p, ch);
        }
        j.flush_blocking(T).unwrap();
    }
    // A pin that would keep more than retain_max_bytes is overruled.
    fs::write(&pin, "310\n").unwrap();
    c.retain_max_bytes = 0;
    let (j, _) = Journal::open(c).unwrap();
    assert!(dir.path().join("control-acked-peer1.tmp").exists());
    j.compact_now().unwrap();
    assert!(matches!(
        seqs_from(311),
        Err(JournalError::Compacted { .. })
    ));
}

#[test]
fn a_version_taken_under_the_store_lock_orders_a_later_push() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(JournalConfig::new(dir.path())).unwrap();
    let a = j.producer();
    let b = j.producer();
    // Store order: a's put, then b's delete; they reach the journal the other way round.
    let va = a.take_version();
    let vb = b.take_version();
    b.try_push_versioned(vb, LeaseChange::Del4(v4(3))).unwrap();
    j.flush_blocking(T).unwrap();
    a.try_push_versioned(va, LeaseChange::Put4(lease4(3, 1)))
        .unwrap();
    j.flush_blocking(T).unwrap();
    assert!(read_state(dir.path(), false).unwrap().leases4.is_empty());
}
