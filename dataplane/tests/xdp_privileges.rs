//! Privilege and memlock failures must say what to grant. Capabilities are per thread on Linux,
//! so each case drops them on a thread of its own (the test runs as root). Kept in its own test
//! binary because it lowers RLIMIT_MEMLOCK, which is per process.
#![cfg(feature = "xdp")]

mod xdp_common;

use xdhcp_dataplane::backend::xdp::loader::{LoaderError, SteerPorts, XdpProgram};
use xdhcp_dataplane::backend::xdp::sys;
use xdhcp_dataplane::backend::xdp::xsk::{XskConfig, XskError, XskSocket};
use xdp_common::*;

const CAP_NET_RAW: u32 = 13;

/// Sets the calling thread's effective capability set to exactly `keep` (permitted unchanged).
fn set_effective_caps(keep: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget fills the two data words of version 3.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    assert_eq!(r, 0, "capget: {}", std::io::Error::last_os_error());
    d[0].effective = 0;
    d[1].effective = 0;
    for &c in keep {
        d[(c / 32) as usize].effective |= 1 << (c % 32);
    }
    // SAFETY: as above; pid 0 = this thread only.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn missing_privileges_and_memlock_are_reported_with_what_to_grant() {
    // Loading BPF without CAP_BPF / CAP_SYS_ADMIN.
    let err = std::thread::spawn(|| {
        set_effective_caps(&[]);
        XdpProgram::load(1, SteerPorts::SERVER).map(|_| ())
    })
    .join()
    .unwrap()
    .expect_err("loading BPF without capabilities must fail");
    assert!(matches!(err, LoaderError::Permission { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("CAP_BPF") && msg.contains("CAP_NET_ADMIN") && msg.contains("root"),
        "{msg}"
    );

    let lab = Lab::new("pv", 1);
    let ifindex = lab.srv.run(|| sys::ifindex(SRV_IF).unwrap());

    // An AF_XDP socket without CAP_NET_RAW.
    let err = lab
        .srv
        .run(|| {
            set_effective_caps(&[]);
            XskSocket::new(ifindex, 0, &XskConfig::new(64, 256)).map(|_| ())
        })
        .expect_err("AF_XDP without CAP_NET_RAW must fail");
    assert!(matches!(err, XskError::Socket(_)), "{err:?}");
    assert!(err.to_string().contains("CAP_NET_RAW"), "{err}");

    // UMEM beyond RLIMIT_MEMLOCK without CAP_IPC_LOCK.
    let lim = libc::rlimit {
        rlim_cur: 64 * 1024,
        rlim_max: 64 * 1024,
    };
    // SAFETY: passes a live rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) }, 0);
    let err = lab
        .srv
        .run(|| {
            // CAP_NET_RAW only: no CAP_IPC_LOCK, so the UMEM counts against the limit.
            set_effective_caps(&[CAP_NET_RAW]);
            // Without CAP_SYS_RESOURCE the limit cannot be lifted above the hard 64 KiB.
            assert_eq!(sys::raise_memlock().unwrap(), 64 * 1024);
            XskSocket::new(ifindex, 0, &XskConfig::new(64, 1024)).map(|_| ())
        })
        .expect_err("2 MiB of UMEM over a 64 KiB memlock limit must fail");
    assert!(matches!(err, XskError::UmemRegister { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("RLIMIT_MEMLOCK") && msg.contains("CAP_IPC_LOCK"),
        "{msg}"
    );
}
