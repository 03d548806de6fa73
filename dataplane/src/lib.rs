//! The xdhcp fast path. This crate owns everything a DHCP packet touches between the wire and the
//! reply: frame parsing and building (`wire`), the sans-IO DHCP engine (`engine`), the sharded lease
//! store and its crash-safe journal (`lease`), and the packet I/O shells (`backend`: plain sockets and
//! AF_XDP). It does not own high availability or the control API: those live in the separate
//! `xdhcp-control` process, which talks to this one over a versioned UNIX-socket protocol.

pub mod backend;
pub mod control_socket;
pub mod engine;
pub mod lease;
pub(crate) mod prefetch;
pub mod server;
pub mod syncrepl;
pub mod wire;
