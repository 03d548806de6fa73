//! `kill -9` of a process writing the journal: every change it saw durable (EveryBatch) or written
//! (Never: a process crash keeps the page cache) is there after reopening. The writer is this test
//! binary itself, re-run with `--ignored --exact journal_child_writer` and an environment variable.

mod journal_util;

use journal_util::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xdhcp_config::model::FsyncPolicy;
use xdhcp_dataplane::lease::journal::{Journal, JournalConfig};
use xdhcp_dataplane::lease::types::LeaseChange;

const ENV_DIR: &str = "XDHCP_JOURNAL_CHILD_DIR";
const ENV_POLICY: &str = "XDHCP_JOURNAL_CHILD_POLICY";

/// Not a test on its own: the child process of `kill9_loses_nothing_that_was_reported`.
#[test]
#[ignore = "child process of journal_kill9; run by the parent test"]
fn journal_child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let never = std::env::var(ENV_POLICY).as_deref() == Ok("never");
    let mut c = JournalConfig::new(&dir);
    c.fsync = if never {
        FsyncPolicy::Never
    } else {
        FsyncPolicy::EveryBatch
    };
    c.queue_capacity = 4096;
    let (j, r) = Journal::open(c).unwrap();
    let p = j.producer();
    let mut out = std::io::stdout().lock();
    writeln!(out, "start {}", r.last_seq).unwrap();
    // Change number k (= its sequence number, one producer) puts address k with cltt k.
    let mut k = r.last_seq + 1;
    let mut reported = 0;
    loop {
        for _ in 0..256 {
            let ch = LeaseChange::Put4(lease4(k as u32, k));
            if p.try_push(ch).is_ok() {
                k += 1;
            } else {
                break;
            }
        }
        let seen = if never {
            j.written_seq()
        } else {
            j.durable_seq()
        };
        if seen > reported {
            reported = seen;
            writeln!(out, "durable {seen}").unwrap();
            out.flush().unwrap();
        }
        std::thread::yield_now();
    }
}

#[test]
fn kill9_loses_nothing_that_was_reported() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut expect_start = 0u64;
    for round in 0..4 {
        let policy = if round % 2 == 0 {
            "every-batch"
        } else {
            "never"
        };
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "journal_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir.path())
            .env(ENV_POLICY, policy)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut last_durable = 0u64;
        let mut started = None;
        let t0 = Instant::now();
        let mut reports = 0;
        // Let it run a while (and past a few reports), then kill -9 mid-stream.
        while (t0.elapsed() < Duration::from_millis(500 + 200 * round) || reports < 5)
            && t0.elapsed() < Duration::from_secs(60)
        {
            match lines.next() {
                Some(Ok(l)) => {
                    // The harness prints "test journal_child_writer ... " before the first line.
                    if let Some(s) = l.split("start ").nth(1) {
                        started = Some(s.parse::<u64>().unwrap());
                    } else if let Some(s) = l.strip_prefix("durable ") {
                        last_durable = s.parse().unwrap();
                        reports += 1;
                    }
                }
                _ => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines already in the pipe were printed before the kill: they count too.
        for l in lines.map_while(Result::ok) {
            if let Some(s) = l.strip_prefix("durable ") {
                last_durable = s.parse().unwrap();
            }
        }
        assert_eq!(
            started,
            Some(expect_start),
            "round {round}: child replayed a different last seq"
        );
        assert!(
            last_durable > expect_start,
            "round {round}: child reported no progress"
        );

        let (j, r) = Journal::open(JournalConfig::new(dir.path())).unwrap();
        assert!(
            r.last_seq >= last_durable,
            "round {round} ({policy}): last seq {} < reported {}",
            r.last_seq,
            last_durable
        );
        assert_eq!(
            r.leases4.len() as u64,
            r.last_seq,
            "round {round}: one lease per change"
        );
        for (i, l) in r.leases4.iter().enumerate() {
            let k = i as u64 + 1;
            assert_eq!(*l, lease4(k as u32, k), "round {round}: change {k}");
        }
        eprintln!(
            "round {round} ({policy}): reported {last_durable}, replayed {} (torn bytes cut: {})",
            r.last_seq, r.report.truncated_bytes
        );
        expect_start = r.last_seq;
        drop(j);
    }
}
