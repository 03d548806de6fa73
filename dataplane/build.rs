//! Build script: compiles the XDP program (`ebpf/xdhcp.bpf.c`) with clang into `OUT_DIR` when the
//! `xdp` feature is on, so the loader can embed the object with `include_bytes_aligned!`. A missing
//! clang or missing libbpf headers fail here with the Debian packages to install, not later at load.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_XDP");
    println!("cargo:rerun-if-env-changed=XDHCP_CLANG");
    if std::env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let ebpf = manifest.join("..").join("ebpf");
    let src = ebpf.join("xdhcp.bpf.c");
    let header = ebpf.join("xdhcp_shared.h");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", header.display());
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("xdhcp.bpf.o");

    let clang = std::env::var("XDHCP_CLANG").unwrap_or_else(|_| "clang".to_string());
    // The multiarch include dir holds asm/types.h, which linux/bpf.h needs; without it clang fails
    // with "asm/types.h not found" even when everything is installed.
    let multiarch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "/usr/include/aarch64-linux-gnu",
        _ => "/usr/include/x86_64-linux-gnu",
    };
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{multiarch}"))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output();
    let output = match result {
        Ok(output) => output,
        Err(e) => fail(&format!(
            "cannot run `{clang}` ({e}). The XDP program is built with clang: install the Debian packages \
             `clang` and `libbpf-dev` (apt-get install clang libbpf-dev), or build without the `xdp` \
             feature (--no-default-features) to get only the socket backend."
        )),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("bpf/bpf_helpers.h") || stderr.contains("bpf_helpers.h") {
            "the libbpf headers are missing: install the Debian package `libbpf-dev`"
        } else if stderr.contains("asm/types.h") || stderr.contains("linux/bpf.h") {
            "the kernel headers are missing: install the Debian packages `libbpf-dev` and `linux-libc-dev`"
        } else {
            "check that the Debian packages `clang` and `libbpf-dev` are installed"
        };
        fail(&format!(
            "compiling {} failed: {hint}.\n{stderr}",
            src.display()
        ));
    }
}

fn fail(msg: &str) -> ! {
    // `cargo:warning` keeps the message visible even when cargo truncates the panic output.
    for line in msg.lines() {
        println!("cargo:warning={line}");
    }
    panic!("{msg}");
}
