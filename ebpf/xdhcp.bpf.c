// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * xdhcp XDP program: steer DHCP into AF_XDP, pass everything else to the kernel.
 *
 * A frame whose UDP destination is the DHCPv4 server port (67) or the DHCPv6
 * server port (547), over IPv4 or IPv6, untagged or with one 802.1Q/802.1ad tag,
 * is redirected to the XSKMAP entry of the rx queue it arrived on. Everything
 * else returns XDP_PASS so the host stays reachable over the same interface
 * (ARP, SSH, ping, the HA peer link). Fragments are always passed: reassembly
 * is the kernel's job and DHCP is never fragmented in practice.
 *
 * Each frame increments exactly one per-CPU counter (see xdhcp_shared.h) so the
 * dataplane can say what was steered and why the rest was passed.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdhcp_shared.h"

/* Server ports. Globals so a loader can steer other ports (the load generator
 * steers the client ports 68/546 with the same program). */
volatile const __u16 xdhcp_port_v4 = 67;
volatile const __u16 xdhcp_port_v6 = 547;

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XDHCP_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDHCP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xdhcp_counters SEC(".maps");

/* Not in the uapi headers we can rely on here. */
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_MF_ 0x2000
#define IP_OFFSET_ 0x1FFF
/* IPv6 extension headers we skip on the way to UDP. */
#define NEXTHDR_HOP_ 0
#define NEXTHDR_ROUTING_ 43
#define NEXTHDR_FRAGMENT_ 44
#define NEXTHDR_DEST_ 60
/* Longest chain of extension headers we walk before giving up (bounded loop). */
#define MAX_V6_EXT 4

struct vlan_hdr_ {
	__be16 tci;
	__be16 encap_proto;
};

struct ipv6_opt_hdr_ {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-octet units, not counting the first 8 */
};

static __always_inline int count(__u32 idx, int action)
{
	__u64 *v = bpf_map_lookup_elem(&xdhcp_counters, &idx);
	if (v)
		*v += 1; /* per-CPU: no atomic needed */
	return action;
}

static __always_inline int steer(struct xdp_md *ctx, __u32 steered_idx)
{
	/* With XDP_PASS as the flags' fallback, a queue that has no socket in the
	 * map passes its DHCP to the kernel instead of dropping it. */
	long ret = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	if (ret == XDP_REDIRECT)
		return count(steered_idx, XDP_REDIRECT);
	return count(XDHCP_CNT_PASS_NO_SOCKET, (int)ret);
}

static __always_inline int udp_dest(struct xdp_md *ctx, void *l4, void *data_end,
				    __u16 port, __u32 steered_idx)
{
	struct udphdr *udp = l4;
	if ((void *)(udp + 1) > data_end)
		return count(XDHCP_CNT_PASS_TOO_SHORT, XDP_PASS);
	if (udp->dest != bpf_htons(port))
		return count(XDHCP_CNT_PASS_OTHER_PORT, XDP_PASS);
	return steer(ctx, steered_idx);
}

static __always_inline int handle_v4(struct xdp_md *ctx, void *l3, void *data_end)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > data_end)
		return count(XDHCP_CNT_PASS_TOO_SHORT, XDP_PASS);
	if (ip->version != 4 || ip->ihl < 5)
		return count(XDHCP_CNT_PASS_BAD_IP, XDP_PASS);
	if (ip->frag_off & bpf_htons(IP_MF_ | IP_OFFSET_))
		return count(XDHCP_CNT_PASS_FRAGMENT, XDP_PASS);
	if (ip->protocol != IPPROTO_UDP)
		return count(XDHCP_CNT_PASS_NOT_UDP, XDP_PASS);
	/* ihl is 4 bits: the offset is bounded by 60, which the verifier can see. */
	void *l4 = l3 + ip->ihl * 4;
	return udp_dest(ctx, l4, data_end, xdhcp_port_v4, XDHCP_CNT_STEERED_V4);
}

static __always_inline int handle_v6(struct xdp_md *ctx, void *l3, void *data_end)
{
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > data_end)
		return count(XDHCP_CNT_PASS_TOO_SHORT, XDP_PASS);
	if (ip6->version != 6)
		return count(XDHCP_CNT_PASS_BAD_IP, XDP_PASS);
	__u8 nexthdr = ip6->nexthdr;
	void *cur = (void *)(ip6 + 1);

#pragma unroll
	for (int i = 0; i < MAX_V6_EXT; i++) {
		if (nexthdr == IPPROTO_UDP)
			break;
		if (nexthdr == NEXTHDR_FRAGMENT_)
			return count(XDHCP_CNT_PASS_FRAGMENT, XDP_PASS);
		if (nexthdr != NEXTHDR_HOP_ && nexthdr != NEXTHDR_ROUTING_ && nexthdr != NEXTHDR_DEST_) {
			/* TCP, ICMPv6, no-next-header, ...: not UDP. AH/ESP and
			 * other unusual headers are counted apart. */
			if (nexthdr == 6 || nexthdr == 58 || nexthdr == 59 || nexthdr == 17)
				return count(XDHCP_CNT_PASS_NOT_UDP, XDP_PASS);
			return count(XDHCP_CNT_PASS_IPV6_EXT, XDP_PASS);
		}
		struct ipv6_opt_hdr_ *opt = cur;
		if ((void *)(opt + 1) > data_end)
			return count(XDHCP_CNT_PASS_TOO_SHORT, XDP_PASS);
		nexthdr = opt->nexthdr;
		cur += ((__u32)opt->hdrlen + 1) * 8;
	}
	if (nexthdr != IPPROTO_UDP)
		return count(XDHCP_CNT_PASS_IPV6_EXT, XDP_PASS);
	return udp_dest(ctx, cur, data_end, xdhcp_port_v6, XDHCP_CNT_STEERED_V6);
}

SEC("xdp")
int xdhcp_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return count(XDHCP_CNT_PASS_TOO_SHORT, XDP_PASS);

	__be16 proto = eth->h_proto;
	void *l3 = (void *)(eth + 1);

	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
		struct vlan_hdr_ *vlan = l3;
		if ((void *)(vlan + 1) > data_end)
			return count(XDHCP_CNT_PASS_TOO_SHORT, XDP_PASS);
		proto = vlan->encap_proto;
		l3 = (void *)(vlan + 1);
		if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_))
			return count(XDHCP_CNT_PASS_VLAN_UNSUPPORTED, XDP_PASS);
	}

	if (proto == bpf_htons(ETH_P_IP))
		return handle_v4(ctx, l3, data_end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return handle_v6(ctx, l3, data_end);
	return count(XDHCP_CNT_PASS_NOT_IP, XDP_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
