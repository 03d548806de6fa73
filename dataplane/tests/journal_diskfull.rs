//! A full disk: the journal thread's writes fail, producers refuse changes (so the engine drops
//! packets instead of acknowledging leases it cannot keep), and once space is freed the journal
//! recovers by itself with nothing torn or lost. Runs on a tiny tmpfs it mounts (needs root).

mod journal_util;

use journal_util::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use xdhcp_config::model::FsyncPolicy;
use xdhcp_dataplane::lease::journal::{read_state, Journal, JournalConfig};
use xdhcp_dataplane::lease::types::LeaseChange;

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "xdjournal",
                at.to_str().unwrap(),
            ])
            .status()
            .expect("running mount");
        assert!(
            st.success(),
            "mounting a tmpfs failed: this test needs root (and util-linux `mount`)"
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn full_disk_refuses_changes_then_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _m = Mount::tmpfs(&mnt, "512k");
    // Most of the space goes to a filler the test frees later.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 384 << 10]).unwrap();
    let dir = mnt.join("journal");
    let mut c = JournalConfig::new(&dir);
    c.fsync = FsyncPolicy::Never;
    c.queue_capacity = 256;
    c.batch_max_records = 64;
    let (j, _) = Journal::open(c.clone()).unwrap();
    let p = j.producer();
    let mut accepted = Vec::new();
    let mut refused = 0;
    let t0 = Instant::now();
    let mut i = 0u32;
    // Push until the disk is full and the journal says so; a full queue alone is not enough.
    while (j.stats().healthy || p.has_room()) && t0.elapsed() < Duration::from_secs(20) {
        match p.try_push(LeaseChange::Put4(lease4(i, u64::from(i)))) {
            Ok(()) => accepted.push(i),
            Err(_) => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        i += 1;
    }
    assert!(
        refused > 0,
        "the journal never refused a change on a full disk"
    );
    // While unhealthy every push is refused at once.
    assert!(p.try_push(LeaseChange::Del4(v4(0))).is_err());
    let st = j.stats();
    assert!(
        !st.healthy,
        "journal reports healthy on a full disk: {st:?}"
    );
    let err = st.last_error.clone().unwrap_or_default();
    assert!(err.contains("No space left"), "{err}");
    assert!(!p.has_room());

    // Free space: the thread's retry succeeds, producers are accepted again.
    std::fs::remove_file(&filler).unwrap();
    wait_until("recovery", || j.stats().healthy && p.has_room());
    for k in 0..100 {
        let n = i + k;
        p.try_push(LeaseChange::Put4(lease4(n, u64::from(n))))
            .unwrap();
        accepted.push(n);
    }
    j.flush_blocking(Duration::from_secs(10)).unwrap();
    drop(p);
    drop(j);
    let r = read_state(&dir, false).unwrap();
    assert_eq!(
        r.report.truncated_bytes, 0,
        "no torn record was left by the failed writes"
    );
    let got: Vec<u32> = r
        .leases4
        .iter()
        .map(|l| u32::from(l.addr) - 0x0a00_0000)
        .collect();
    assert_eq!(
        got, accepted,
        "every accepted change, and only those, is in the journal"
    );
}
