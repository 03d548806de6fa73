/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The contract between the XDP program (xdhcp.bpf.c) and the dataplane loader
 * (dataplane/src/backend/xdp.rs). The Rust side mirrors every value here; a unit
 * test parses this file and fails when the two disagree, so change both together.
 */
#ifndef XDHCP_SHARED_H
#define XDHCP_SHARED_H

/* Name of the XDP program section/function, of the maps and of the globals. */
#define XDHCP_PROG_NAME "xdhcp_xdp"

/* Upper bound of the XSKMAP (rx queues per interface). The loader sizes the map
 * to the interface's queue count, which must not exceed this. */
#define XDHCP_MAX_QUEUES 256

/* Index of each per-CPU counter in the `xdhcp_counters` map. Every frame the
 * program sees increments exactly one of them. */
enum xdhcp_counter {
	/* DHCPv4 (UDP to the v4 server port) redirected into the rx queue's AF_XDP socket. */
	XDHCP_CNT_STEERED_V4 = 0,
	/* DHCPv6 (UDP to the v6 server port) redirected into the rx queue's AF_XDP socket. */
	XDHCP_CNT_STEERED_V6 = 1,
	/* DHCP, but no socket in the XSKMAP for this rx queue: passed to the kernel. */
	XDHCP_CNT_PASS_NO_SOCKET = 2,
	/* Neither IPv4 nor IPv6 (ARP, LLDP, ...). */
	XDHCP_CNT_PASS_NOT_IP = 3,
	/* IP, but not UDP (TCP, ICMP, ...). */
	XDHCP_CNT_PASS_NOT_UDP = 4,
	/* UDP to a port that is not DHCP. */
	XDHCP_CNT_PASS_OTHER_PORT = 5,
	/* IPv4 fragment (offset != 0 or MF set) or IPv6 fragment header: reassembly is the kernel's. */
	XDHCP_CNT_PASS_FRAGMENT = 6,
	/* Frame ends before the headers it announces. */
	XDHCP_CNT_PASS_TOO_SHORT = 7,
	/* More than one VLAN tag (QinQ stacks are not steered). */
	XDHCP_CNT_PASS_VLAN_UNSUPPORTED = 8,
	/* IPv6 extension header chain that is too long or of an unusual kind (AH, ESP, ...). */
	XDHCP_CNT_PASS_IPV6_EXT = 9,
	/* Malformed IP header (IPv4 IHL < 5, version field not matching the EtherType). */
	XDHCP_CNT_PASS_BAD_IP = 10,
	XDHCP_CNT_MAX = 11,
};

#endif /* XDHCP_SHARED_H */
