//! xdhcp-control: the control process of xdhcp. It owns high availability (the Kea 2.2 HA state
//! machine per relationship, the peer protocol on the wire, lease sync and replication of the lease
//! journal to peers), the Kea-style control API (HTTP and UNIX socket) with its forwarding of
//! lease and config commands to the dataplane, and Prometheus metrics. It does not answer DHCP and
//! never touches a lease directly: the dataplane process owns the leases and is driven over its
//! versioned UNIX-socket IPC. The protocol logic (`ha::state`, `ha::commands`) is sans-IO; the
//! shells (`server`, `peer`, `dataplane`, `tls`) do the I/O; `sim` runs the real state machines under a
//! seeded deterministic simulator.

pub mod cli;
pub mod dataplane;
pub mod ha;
pub mod peer;
pub mod server;
pub mod sim;
pub mod syncgate;
pub mod tls;
