//! `xdhcp-control -c CONFIG`: the control process (HA peer protocol, replication, control API).
fn main() {
    std::process::exit(xdhcp_control::cli::main());
}
