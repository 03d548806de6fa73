//! Benchmarks and load generation for xdhcp. This crate owns the measuring tools, not the
//! server: `xdhcp-loadgen` (a DHCPv4 load generator over AF_XDP or a packet socket that
//! simulates millions of clients doing DORA and renewals, as a relay or as the clients
//! themselves), `xdhcp-echo` (a raw AF_XDP echo responder that measures the I/O floor of the
//! lab), the criterion benchmarks of the engine (`benches/`), and `scripts/bench`, which runs
//! them side by side with Kea.
//!
//! Modules: [`frames`] (request templates and reply parsing), [`track`] (exchanges in flight,
//! matched by xid), [`stats`] (latency histogram and report), [`port`] (batched frame I/O),
//! [`gen`] (the generator loop); [`frames6`] and [`gen6`] are the DHCPv6 counterparts of
//! `frames` and `gen` (SOLICIT/ADVERTISE/REQUEST/REPLY with IA_NA and IA_PD).

pub mod frames;
pub mod frames6;
pub mod gen;
pub mod gen6;
pub mod port;
pub mod stats;
pub mod track;
