//! Benchmarks and load generation for xdhcp.
