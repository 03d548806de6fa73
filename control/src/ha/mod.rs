//! High availability: the per-relationship state machine ([`state`]) and, beside it, the pure
//! builders and parsers of Kea 2.2's HA commands.

pub mod commands;
pub mod state;

#[cfg(test)]
mod state_table_tests;
