/* The maps the socket-LB programs (sock.c) read and the agent writes (native/ebpf_maps.cc, and their TS mirror
 * src/dataplane/ebpf/layout.ts). Plain uapi types only: this header is compiled for the BPF target and for the
 * host, so every struct has explicit padding and the same size on both (the addon's unit test checks the sizes
 * against layout.ts).
 *
 * One address form for both families: 16 bytes, an IPv4 address written IPv4-mapped (::ffff:a.b.c.d). connect4 and
 * connect6 with a v4-mapped address (a dual-stack AF_INET6 socket dialling an IPv4 ClusterIP) then hit the same key.
 * Addresses and ports are in network order, as the kernel hands them to the hooks; everything else is host order.
 *
 * Layout version: bump SVP_LAYOUT_VERSION with any change here. The pins live under /sys/fs/bpf/svcplane/v<N>/, so
 * a new layout never adopts maps of an old one (libbpf would refuse them anyway).
 */
#ifndef SVCPLANE_BPF_MAPS_H
#define SVCPLANE_BPF_MAPS_H

#include <linux/types.h>

#define SVP_LAYOUT_VERSION 1

/* svp_svc value flags */
#define SVP_F_AFFINITY 0x1 /* sessionAffinity ClientIP: keep a client (its network namespace) on one backend */
#define SVP_F_EXTERNAL 0x2 /* an external IP, LoadBalancer IP or node address:NodePort (status and explain only) */

/* A Service frontend: address, port, IP protocol (IPPROTO_TCP / IPPROTO_UDP). */
struct svp_svc_key {
  __be32 addr[4];
  __be16 port;
  __u8 proto;
  __u8 pad;
};

/* count == 0: the Service port has no endpoints; connect() and sendmsg() fail with ECONNREFUSED. */
struct svp_svc_val {
  __u32 set;           /* the backend set: slots, affinity and reverse translation are keyed by it */
  __u16 count;         /* slots 1..count are valid */
  __u16 flags;         /* SVP_F_* */
  __u32 affinity_secs; /* with SVP_F_AFFINITY: sessionAffinityConfig.clientIP.timeoutSeconds */
  __u32 pad;
};

/* Slot N of a set -> backend id (__u32). A weighted backend holds several slots. */
struct svp_slot_key {
  __u32 set;
  __u32 slot;
};

/* (set, backend) -> __u8 1: whether a remembered affinity backend is still one of the set's. */
struct svp_member_key {
  __u32 set;
  __u32 backend;
};

/* Backend id (__u32) -> its address and port. */
struct svp_backend {
  __be32 addr[4];
  __be16 port;
  __u16 pad;
};

/* Reverse translation of a translated socket: (socket cookie, backend) -> the frontend the application dialled.
 * recvmsg (UDP replies) and getpeername report the frontend, as the application expects. */
struct svp_rnat_key {
  __u64 cookie;
  __be32 addr[4];
  __be16 port;
  __u16 pad;
  __u32 pad2;
};

struct svp_rnat_val {
  __be32 addr[4];
  __be16 port;
  __u16 pad;
  __u32 set;
};

/* sessionAffinity: the client is its network namespace (a pod; the node's own processes share one). */
struct svp_aff_key {
  __u64 netns_cookie;
  __u32 set;
  __u32 pad;
};

struct svp_aff_val {
  __u64 last_ns; /* bpf_ktime_get_ns() of the last connection that used it */
  __u32 backend;
  __u32 pad;
};

/* Map capacities. The hash maps allocate elements as they fill (BPF_F_NO_PREALLOC), but their bucket arrays (16 bytes
 * per entry of capacity) and the LRU maps are allocated at creation: about 26 MB in all at these sizes. */
#define SVP_MAX_SERVICES (1 << 17) /* frontends: ClusterIPs, external IPs, LB IPs, NodePort x node address */
#define SVP_MAX_SLOTS (1 << 18)
#define SVP_MAX_BACKENDS (1 << 17)
#define SVP_MAX_RNAT (1 << 16)
#define SVP_MAX_AFFINITY (1 << 16)

#endif
