//! Leases: record types, the sharded in-memory store, the journal that makes them durable, and
//! Kea memfile CSV import/export.

pub mod alloc;
pub mod csv;
pub mod journal;
pub mod json;
pub mod slots;
mod spsc;
pub mod store;
pub mod types;

pub use types::*;
