//! The xdhcp control process (HA, replication, control API). Being built.
