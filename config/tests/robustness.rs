//! Mangled configurations never panic the loader: every example file is truncated and has bytes flipped,
//! inserted and deleted under a fixed seed, and each result must be a clean Ok or a list of diagnostics.

mod common;
use common::*;

/// xorshift64*: deterministic, so a failure names a reproducible (file, round).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const NOISE: &[u8] = b"{}[],:\"'/*#\\-0x19 azZ.\n\t";

#[test]
fn mutated_examples_never_panic() {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["kea-examples", "hub-and-spoke"] {
        for e in std::fs::read_dir(data(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.sort();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for f in &files {
        let orig = std::fs::read(f).unwrap();
        for round in 0..150 {
            let mut b = orig.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                match rng.below(4) {
                    0 => b.truncate(i),
                    1 => b[i] = NOISE[rng.below(NOISE.len())],
                    2 => b.insert(i, NOISE[rng.below(NOISE.len())]),
                    _ => {
                        b.remove(i);
                    }
                }
                if b.is_empty() {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&b);
            let r = std::panic::catch_unwind(|| xdhcp_config::load_str(&text, f));
            assert!(r.is_ok(), "panic on {} round {round}", f.display());
            if let Err(e) = r.unwrap() {
                assert!(!e.errors.is_empty());
            }
        }
    }
}

/// An ISP-sized file (20 subnets of 5,000 reservations each, 100,000 in all) loads in well under the time an
/// operator would wait: every cross-check is indexed, none is quadratic (a quadratic duplicate check would
/// do 250 million comparisons here).
#[test]
fn large_configuration_loads_fast() {
    let mut subnets = Vec::new();
    for s in 0..20u32 {
        let mut res = Vec::new();
        for h in 1..=5000u32 {
            res.push(format!(
                r#"{{"hw-address": "02:00:{:02x}:{:02x}:{:02x}:00", "ip-address": "10.{s}.{}.{}"}}"#,
                s,
                h >> 8,
                h & 255,
                h >> 8,
                h & 255
            ));
        }
        subnets.push(format!(
            r#"{{"id": {}, "subnet": "10.{s}.0.0/16", "pools": [{{"pool": "10.{s}.200.0 - 10.{s}.255.254"}}],
                "option-data": [{{"name": "routers", "data": "10.{s}.255.255"}}], "reservations": [{}]}}"#,
            s + 1,
            res.join(",")
        ));
    }
    let json = v4("", &subnets.join(","));
    let t = std::time::Instant::now();
    let l = ok(&json);
    let took = t.elapsed();
    let d = l.config.dhcp4.unwrap();
    assert_eq!(d.subnets.len(), 20);
    assert_eq!(
        d.subnets
            .iter()
            .map(|s| s.reservations.len())
            .sum::<usize>(),
        100_000
    );
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
    eprintln!("20 subnets with 100,000 reservations loaded in {took:?}");
}
