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
