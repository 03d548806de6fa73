//! Frame and DHCPv4 parsing on arbitrary bytes: must never panic, and every accessor of an
//! accepted message must stay in bounds. The prefetch hint's peek likewise, and it accepts nothing
//! the full parse refuses at first sight.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdhcp_dataplane::wire::dhcp4::{Dhcp4KeyHint, Dhcp4Scratch, Dhcp4View};
use xdhcp_dataplane::wire::frame::parse_udp_frame;

fuzz_target!(|data: &[u8]| {
    let mut scratch = Box::<Dhcp4Scratch>::default();
    // As a whole frame...
    if let Ok(f) = parse_udp_frame(data) {
        assert!(f.payload_start <= f.payload_end && f.payload_end <= data.len());
        if let Ok(v) = Dhcp4View::parse(&data[f.payload_start..f.payload_end], &mut scratch) {
            touch(&v);
        }
    }
    // ...and as a bare DHCP payload (the UDP backend's view).
    let hint = Dhcp4KeyHint::peek(data);
    if let Ok(v) = Dhcp4View::parse(data, &mut scratch) {
        touch(&v);
        let h = hint.expect("the hint peeks at whatever the full parse accepts");
        assert_eq!(
            (h.htype, h.chaddr, h.ciaddr, h.giaddr),
            (v.htype(), v.chaddr(), v.ciaddr(), v.giaddr())
        );
    }
});

fn touch(v: &Dhcp4View<'_>) {
    let _ = v.message_type();
    let _ = (
        v.ciaddr(),
        v.giaddr(),
        v.chaddr(),
        v.client_id(),
        v.requested_ip(),
        v.server_id(),
    );
    let _ = v.parameter_request_list();
    for code in 0..=255u8 {
        let _ = v.option(code);
    }
    for sub in 0..=255u8 {
        let _ = v.relay_suboption(sub);
    }
}
