//! Throughput of the journal thread (a measurement, not an assertion on time):
//! `cargo test --release -p xdhcp-dataplane --test journal_perf -- --ignored --nocapture`.

mod journal_util;

use journal_util::*;
use std::time::{Duration, Instant};
use xdhcp_config::model::FsyncPolicy;
use xdhcp_dataplane::lease::journal::{Journal, JournalConfig};
use xdhcp_dataplane::lease::types::LeaseChange;

fn run(policy: FsyncPolicy, producers: u32, per: u32) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = JournalConfig::new(dir.path());
    c.fsync = policy;
    c.queue_capacity = 65_536;
    let (j, _) = Journal::open(c).unwrap();
    // Build the changes first so the figure is the journal's, not the generator's.
    let inputs: Vec<Vec<LeaseChange>> = (0..producers)
        .map(|t| {
            (0..per)
                .map(|i| LeaseChange::Put4(lease4(t * per + i, u64::from(i))))
                .collect()
        })
        .collect();
    let total = u64::from(producers * per);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for input in inputs {
            let p = j.producer();
            s.spawn(move || {
                for ch in input {
                    push_all(&p, ch);
                }
            });
        }
    });
    while j.durable_seq() < total {
        std::thread::sleep(Duration::from_micros(200));
    }
    let el = t0.elapsed();
    let st = j.stats();
    println!(
        "journal {policy:?}, {producers} producers: {total} changes in {el:?} = {:.2} M changes/s, {} batches (avg {:.0}/batch), {:.0} MB/s, {} fsyncs",
        total as f64 / el.as_secs_f64() / 1e6,
        st.batches,
        total as f64 / st.batches as f64,
        st.bytes as f64 / el.as_secs_f64() / 1e6,
        st.fsyncs
    );
    assert_eq!(st.records, total);
}

#[test]
#[ignore = "measurement; run in release with --nocapture"]
fn journal_throughput() {
    run(FsyncPolicy::Never, 1, 2_000_000);
    run(FsyncPolicy::Never, 2, 1_000_000);
    run(FsyncPolicy::EveryBatch, 2, 1_000_000);
    run(FsyncPolicy::IntervalMs(10), 2, 1_000_000);
}
