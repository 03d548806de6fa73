//! The RFC 3074 load-balancing hash, shared by the DHCP engine (which answers only the clients of the
//! scopes it serves) and the control process (which decides the scopes). Both sides must compute the
//! same bucket for the same client as a Kea 2.2 partner does, or two servers would answer one client
//! (or none would), so this is the only implementation in the workspace.
//!
//! Kea's use of it (`query_filter.cc`): the key is the DHCPv4 client identifier (option 61 payload,
//! type byte included) when present and non-empty, else `chaddr`; for DHCPv6 the DUID (option 1
//! payload). The bucket is `hash % number_of_active_servers`; bucket 0 is the primary's scope, 1 the
//! secondary's.

/// The 256-entry mixing table of RFC 3074 §6 (a permutation of 0..=255).
const MIX: [u8; 256] = [
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232, 31, 32, 55, 60, 152,
    58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223, 59, 3, 18, 140, 111, 166, 203, 196, 134, 243,
    124, 95, 222, 179, 197, 65, 180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97,
    16, 40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67, 207, 9, 178, 204,
    74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5, 20, 113, 71, 35, 128, 13, 182, 94, 25,
    226, 227, 199, 75, 27, 41, 245, 230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241,
    73, 88, 105, 39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84, 82,
    163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239, 195, 42, 106, 198, 118,
    112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253, 137, 185, 99, 164, 102, 147, 45, 66, 231,
    52, 141, 211, 194, 206, 246, 238, 56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171,
    72, 50, 33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213, 96, 235, 136,
    208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4, 216, 131, 89, 21, 28, 133, 37, 153,
    149, 80, 170, 68, 6, 169, 234, 151,
];

/// RFC 3074 §6 hash of `key`: seeded with the key length (truncated to a byte, as the RFC's C code
/// does), then mixed from the last byte to the first.
#[inline]
pub fn lb_hash(key: &[u8]) -> u8 {
    let mut h = key.len() as u8;
    for &b in key.iter().rev() {
        h = MIX[(h ^ b) as usize];
    }
    h
}

/// The index of the server (0 = primary, 1 = secondary, ...) that owns the client with `key` when
/// `servers` active servers share the load. `servers == 0` maps everything to 0.
#[inline]
pub fn lb_server_index(key: &[u8], servers: usize) -> usize {
    if servers == 0 {
        return 0;
    }
    usize::from(lb_hash(key)) % servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_the_rfc_permutation() {
        // RFC 3074 §6: the table starts 251, 175, 119, 215 and ends 169, 234, 151, and is a
        // permutation, so every byte value appears exactly once.
        assert_eq!(&MIX[..4], &[251, 175, 119, 215]);
        assert_eq!(&MIX[253..], &[169, 234, 151]);
        let mut seen = [false; 256];
        for &v in MIX.iter() {
            assert!(!seen[v as usize], "value {v} appears twice");
            seen[v as usize] = true;
        }
    }

    #[test]
    fn known_values_worked_by_hand() {
        // Empty key: the seed (length 0) is never mixed.
        assert_eq!(lb_hash(&[]), 0);
        // One byte 0x00: h = 1; h = T[1 ^ 0] = T[1] = 175.
        assert_eq!(lb_hash(&[0x00]), 175);
        // One byte 0x01: h = T[1 ^ 1] = T[0] = 251.
        assert_eq!(lb_hash(&[0x01]), 251);
        // Two bytes [0x00, 0x02]: h = 2; h = T[2 ^ 2] = T[0] = 251; h = T[251 ^ 0] = T[251] = 68.
        assert_eq!(lb_hash(&[0x00, 0x02]), 68);
        // Order matters (mixing runs from the last byte to the first): [0x02, 0x00]:
        // h = T[2 ^ 0] = T[2] = 119; h = T[119 ^ 2] = T[117] = 26.
        assert_eq!(lb_hash(&[0x02, 0x00]), 26);
        assert_eq!(lb_server_index(&[0x00], 2), 1);
        assert_eq!(lb_server_index(&[0x01], 2), 1);
        assert_eq!(lb_server_index(&[0x00, 0x02], 2), 0);
        assert_eq!(lb_server_index(&[0x00], 0), 0);
    }

    #[test]
    fn splits_random_macs_about_evenly() {
        // Kea's query filter test expects roughly 50/50 over 65535 random MACs; use a fixed LCG.
        let mut x: u64 = 0x1234_5678_9abc_def0;
        let mut ones = 0u32;
        let n = 65_535u32;
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mac = (x >> 16).to_be_bytes();
            ones += lb_server_index(&mac[2..8], 2) as u32;
        }
        let share = f64::from(ones) / f64::from(n);
        assert!((0.45..0.55).contains(&share), "secondary share {share}");
    }
}
