//! Helpers shared by the integration tests: load JSON text and look at diagnostics by JSON path.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use xdhcp_config::{load_file, load_str, ConfigError, Diagnostic, Loaded};

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

pub fn load_data(rel: &str) -> Result<Loaded, ConfigError> {
    load_file(&data(rel))
}

pub fn ok(json: &str) -> Loaded {
    match load_str(json, Path::new("test.json")) {
        Ok(l) => l,
        Err(e) => panic!("expected the config to load, got:\n{e}"),
    }
}

pub fn errors(json: &str) -> Vec<Diagnostic> {
    match load_str(json, Path::new("test.json")) {
        Ok(l) => panic!(
            "expected errors, but it loaded with warnings {:?}",
            l.warnings
        ),
        Err(e) => e.errors,
    }
}

/// Asserts one error sits at `path` and its message contains `needle`.
pub fn has(diags: &[Diagnostic], path: &str, needle: &str) {
    assert!(
        diags
            .iter()
            .any(|d| d.json_path == path && d.message.contains(needle)),
        "no diagnostic at {path} containing {needle:?}; got:\n{}",
        diags
            .iter()
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A minimal valid Dhcp4 around `subnet` (a JSON object text) and extra global members.
pub fn v4(extra: &str, subnets: &str) -> String {
    format!(
        r#"{{"Dhcp4": {{"interfaces-config": {{"interfaces": ["xd0"]}}, {extra} "subnet4": [{subnets}]}}}}"#
    )
}

pub fn v6(extra: &str, subnets: &str) -> String {
    format!(
        r#"{{"Dhcp6": {{"interfaces-config": {{"interfaces": ["xd0"]}}, {extra} "subnet6": [{subnets}]}}}}"#
    )
}
