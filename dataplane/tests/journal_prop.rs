//! Property: any sequence of changes, restarts and compactions replays to the state of an
//! in-memory model applying the same changes.

mod journal_util;

use journal_util::*;
use proptest::prelude::*;
use std::time::Duration;
use xdhcp_dataplane::lease::journal::{Journal, JournalConfig};
use xdhcp_dataplane::lease::types::{Lease6Type, LeaseChange};

#[derive(Debug, Clone)]
enum Op {
    Change(LeaseChange),
    Compact,
    Restart,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u32..24, 0u64..1_000_000).prop_map(|(k, t)| Op::Change(LeaseChange::Put4(lease4(k, t)))),
        3 => (0u32..24).prop_map(|k| Op::Change(LeaseChange::Del4(v4(k)))),
        4 => (0u32..12, 0u64..1_000_000).prop_map(|(k, t)| Op::Change(LeaseChange::Put6(lease6(k, t)))),
        2 => (0u32..12, any::<bool>()).prop_map(|(k, pd)| Op::Change(LeaseChange::Del6(
            v6(k),
            if pd { Lease6Type::Pd } else { Lease6Type::Na }
        ))),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn replay_matches_model(ops in prop::collection::vec(op(), 1..120), seg_kib in 1u64..8) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = JournalConfig::new(dir.path());
        cfg.fsync = xdhcp_config::model::FsyncPolicy::Never;
        cfg.segment_max_bytes = seg_kib << 10;
        let mut model = Model::default();
        let (mut j, _) = Journal::open(cfg.clone()).unwrap();
        let mut p = j.producer();
        for op in ops {
            match op {
                Op::Change(c) => {
                    model.apply(&c);
                    push_all(&p, c);
                }
                Op::Compact => {
                    j.compact_now().unwrap();
                }
                Op::Flush => {
                    j.flush_blocking(Duration::from_secs(10)).unwrap();
                }
                Op::Restart => {
                    drop(p);
                    drop(j);
                    let (j2, r) = Journal::open(cfg.clone()).unwrap();
                    prop_assert_eq!(r.leases4, model.leases4());
                    prop_assert_eq!(r.leases6, model.leases6());
                    j = j2;
                    p = j.producer();
                }
            }
        }
        drop(p);
        drop(j);
        let (_j, r) = Journal::open(cfg).unwrap();
        prop_assert_eq!(r.leases4, model.leases4());
        prop_assert_eq!(r.leases6, model.leases6());
    }
}
