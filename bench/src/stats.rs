//! What a load-generator run measured, and how it is printed: a human table or one JSON object
//! (the form `scripts/bench` reads). Latencies go into an HDR histogram (3 significant digits,
//! 1 µs … 60 s), so percentiles cost no per-sample allocation and have a known precision.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency samples in nanoseconds.
pub struct Latency {
    h: Histogram<u64>,
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency")
            .field("count", &self.h.len())
            .finish()
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // 1 ns .. 60 s at 3 significant digits: about 0.1% error, fixed size (no growth).
        let h = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .expect("static histogram bounds are valid");
        Latency { h }
    }

    pub fn record(&mut self, ns: u64) {
        // saturating_record clamps out-of-range samples instead of failing.
        self.h.saturating_record(ns.max(1));
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// The value at percentile `p` (0..=100) in microseconds; 0 with no samples.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.h.is_empty() {
            return 0.0;
        }
        self.h.value_at_quantile(p / 100.0) as f64 / 1000.0
    }

    pub fn max_us(&self) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.h.max() as f64 / 1000.0
        }
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            p50_us: round3(self.percentile_us(50.0)),
            p99_us: round3(self.percentile_us(99.0)),
            p999_us: round3(self.percentile_us(99.9)),
            max_us: round3(self.max_us()),
            samples: self.count(),
        }
    }
}

/// The two latencies a run measures: whole exchanges (first message sent to last reply: a DORA is
/// two round trips and the client's turn between them) and single round trips (each reply against
/// the request it answers), the latter directly comparable with the raw echo's one round trip.
#[derive(Debug, Default)]
pub struct Latencies {
    pub exchange: Latency,
    pub round_trip: Latency,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies::default()
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub samples: u64,
}

/// Counters of one run (only exchanges started after the warm-up are measured).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Exchanges started in the measurement window.
    pub started: u64,
    /// Of those, completed (ACK received; echo: frame returned).
    pub completed: u64,
    /// Of those, completed renewals (included in `completed`).
    pub renewals: u64,
    /// Of those, ended by a NAK.
    pub naks: u64,
    /// Of those, not answered within the timeout (including any still open at the end).
    pub timeouts: u64,
    /// Replies received for measured exchanges (each round trip counts one).
    pub replies: u64,
    /// Frames sent, all of them (warm-up included).
    pub sent: u64,
    /// Frames received on the steered port, all of them.
    pub received: u64,
    /// Received frames that did not parse as DHCP.
    pub unparsed: u64,
    /// Replies whose xid matched no open exchange (late, after a timeout, or foreign).
    pub unknown_xid: u64,
    /// Replies for an exchange that waited for another message (duplicates).
    pub wrong_stage: u64,
    /// Open loop: exchanges due that could not start because the window was full.
    pub window_full: u64,
    /// Frames that could not be queued for transmission (ring full, no free buffer).
    pub tx_dropped: u64,
}

/// How a run was made (the report's fixed fields).
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub mode: String,
    pub io: String,
    /// The measured span, seconds.
    pub duration_s: f64,
    /// Open loop target (exchanges/s); 0 for closed loop.
    pub target_rate: u64,
    pub window: u64,
    /// The whole run including the warm-up, seconds (for the sent-frames rate).
    pub total_s: f64,
    /// CPU time the generator thread used over the whole run, seconds (system calls and the
    /// softirq work charged to it included).
    pub gen_cpu_s: f64,
    /// Times the generator's loop lost its core (see `xdhcp_dataplane::backend::StallMeter`):
    /// a reply that arrives meanwhile is timestamped late, so these are part of the latency.
    pub stalls: u64,
    pub stalled_us: u64,
}

/// The result of one run, as printed with `--json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub mode: String,
    pub io: String,
    pub duration_s: f64,
    /// Target rate for open loop (exchanges/s); 0 for closed loop.
    pub target_rate: u64,
    pub window: u64,
    pub exchanges_per_s: f64,
    /// Round trips per second (replies received for measured exchanges): 2 per DORA, 1 per
    /// renewal or echo.
    pub packets_per_s: f64,
    /// Frames sent per second over the whole run.
    pub sent_per_s: f64,
    /// Generator CPU per frame sent or received, nanoseconds: what the generator costs,
    /// independent of how busy the machine was.
    pub gen_cpu_ns_per_frame: f64,
    /// Times the generator lost its core for >= 0.5 ms while busy, and their total length.
    pub gen_stalls: u64,
    pub gen_stalled_us: u64,
    /// Timeouts + NAKs, and their share of the exchanges started.
    pub drops: u64,
    pub drop_pct: f64,
    /// Whole exchanges (see [`Latencies`]).
    pub latency: LatencySummary,
    /// Single round trips: each reply against the request it answers.
    pub round_trip: LatencySummary,
    pub counters: Counters,
}

impl Report {
    pub fn new(run: &RunInfo, c: Counters, lat: &Latencies) -> Report {
        let (duration_s, target_rate, window, sent_window_s) =
            (run.duration_s, run.target_rate, run.window, run.total_s);
        let d = duration_s.max(1e-9);
        let drops = c.timeouts + c.naks;
        Report {
            mode: run.mode.clone(),
            io: run.io.clone(),
            duration_s,
            target_rate,
            window,
            exchanges_per_s: c.completed as f64 / d,
            packets_per_s: c.replies as f64 / d,
            sent_per_s: c.sent as f64 / sent_window_s.max(1e-9),
            gen_cpu_ns_per_frame: if c.sent + c.received == 0 {
                0.0
            } else {
                (run.gen_cpu_s * 1e9 / (c.sent + c.received) as f64).round()
            },
            gen_stalls: run.stalls,
            gen_stalled_us: run.stalled_us,
            drops,
            drop_pct: if c.started == 0 {
                0.0
            } else {
                100.0 * drops as f64 / c.started as f64
            },
            latency: lat.exchange.summary(),
            round_trip: lat.round_trip.summary(),
            counters: c,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let c = &self.counters;
        let (l, rt) = (&self.latency, &self.round_trip);
        let mut s = String::new();
        let load = if self.target_rate == 0 {
            format!("closed loop, window {}", self.window)
        } else {
            format!("open loop at {}/s", self.target_rate)
        };
        s.push_str(&format!(
            "xdhcp-loadgen: {} over {}, {load}, {:.1} s\n",
            self.mode, self.io, self.duration_s
        ));
        s.push_str(&format!(
            "  {:<22} {:>14.0}\n",
            "exchanges/s", self.exchanges_per_s
        ));
        s.push_str(&format!(
            "  {:<22} {:>14.0}\n",
            "packets/s (replies)", self.packets_per_s
        ));
        s.push_str(&format!(
            "  {:<22} {:>14.0}\n",
            "sent frames/s", self.sent_per_s
        ));
        s.push_str(&format!(
            "  {:<22} {:>14} ({:.3}%)\n",
            "drops", self.drops, self.drop_pct
        ));
        s.push_str(&format!(
            "  {:<22} {:>14.0}\n",
            "generator CPU ns/frame", self.gen_cpu_ns_per_frame
        ));
        s.push_str(&format!(
            "  {:<22} {:>14} ({:.1} ms lost for >= 0.5 ms each)\n",
            "generator stalls",
            self.gen_stalls,
            self.gen_stalled_us as f64 / 1000.0
        ));
        s.push_str(&format!(
            "  {:<22} p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs\n",
            "latency", l.p50_us, l.p99_us, l.p999_us, l.max_us
        ));
        s.push_str(&format!(
            "  {:<22} p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs\n",
            "round trip", rt.p50_us, rt.p99_us, rt.p999_us, rt.max_us
        ));
        s.push_str(&format!(
            "  started {}  completed {}  renewals {}  naks {}  timeouts {}\n",
            c.started, c.completed, c.renewals, c.naks, c.timeouts
        ));
        s.push_str(&format!(
            "  sent {}  received {}  unparsed {}  unknown-xid {}  duplicate {}  window-full {}  tx-dropped {}\n",
            c.sent, c.received, c.unparsed, c.unknown_xid, c.wrong_stage, c.window_full, c.tx_dropped
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut l = Latency::new();
        // 1..=10_000 µs, one sample each.
        for us in 1..=10_000u64 {
            l.record(us * 1000);
        }
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 0.01;
        assert!(
            close(l.percentile_us(50.0), 5000.0),
            "p50 {}",
            l.percentile_us(50.0)
        );
        assert!(
            close(l.percentile_us(99.0), 9900.0),
            "p99 {}",
            l.percentile_us(99.0)
        );
        assert!(
            close(l.percentile_us(99.9), 9990.0),
            "p99.9 {}",
            l.percentile_us(99.9)
        );
        assert!(close(l.max_us(), 10_000.0));
        assert_eq!(l.count(), 10_000);
    }

    #[test]
    fn tail_percentiles_see_rare_outliers() {
        let mut l = Latency::new();
        for _ in 0..990 {
            l.record(100_000); // 100 µs
        }
        for _ in 0..10 {
            l.record(5_000_000); // 5 ms: 1% of samples
        }
        assert!((l.percentile_us(50.0) - 100.0).abs() < 0.2);
        assert!(
            (l.percentile_us(99.0) - 100.0).abs() < 0.2,
            "p99 is the 990th sample"
        );
        assert!(
            (l.percentile_us(99.9) - 5000.0).abs() < 5.0,
            "p99.9 falls in the outliers"
        );
        let empty = Latency::new();
        assert_eq!(empty.percentile_us(99.0), 0.0);
    }

    #[test]
    fn report_rates_and_drop_share() {
        let c = Counters {
            started: 1000,
            completed: 990,
            naks: 2,
            timeouts: 8,
            replies: 1985,
            sent: 2000,
            received: 2000,
            ..Counters::default()
        };
        let run = RunInfo {
            mode: "dora".into(),
            io: "xdp".into(),
            duration_s: 2.0,
            target_rate: 0,
            window: 64,
            total_s: 2.5,
            gen_cpu_s: 0.004,
            stalls: 2,
            stalled_us: 4500,
        };
        let r = Report::new(&run, c, &Latencies::new());
        assert_eq!(r.exchanges_per_s, 495.0);
        assert_eq!(r.packets_per_s, 992.5);
        assert_eq!(r.drops, 10);
        assert!((r.drop_pct - 1.0).abs() < 1e-9);
        assert_eq!(r.sent_per_s, 800.0);
        assert_eq!(
            r.gen_cpu_ns_per_frame, 1000.0,
            "4 ms over 2000 sent + 2000 received"
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["latency"]["p99_us"], 0.0);
        assert_eq!(j["counters"]["timeouts"], 8);
        assert_eq!(
            (j["gen_stalls"].as_u64(), j["gen_stalled_us"].as_u64()),
            (Some(2), Some(4500))
        );
    }
}
