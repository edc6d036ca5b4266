// SPDX-License-Identifier: GPL-2.0
/* Socket-level load balancing: cgroup v2 sock_addr programs that resolve a Service frontend to a backend when a
 * process calls connect() or sendmsg(), and show the frontend again to recvmsg() and getpeername(). The packets of a
 * translated socket are plain client-to-pod packets: no per-packet NAT, no NAT conntrack entry.
 *
 * After Cilium's bpf/bpf_sock.c (__sock4_xlate_fwd / __sock4_xlate_rev), with svcplane's differences:
 *  - one program per hook for both the native and the IPv4-mapped case (maps.h keys every address as 16 bytes);
 *  - a Service port without endpoints (count 0) refuses with ECONNREFUSED, what kube-proxy's reject rule gives a TCP
 *    client (Cilium refuses with EHOSTUNREACH);
 *  - whatever this hook cannot settle (no entry, a Local policy without a local endpoint, a slot read while the agent
 *    shrinks the set) proceeds untranslated to the nftables table programmed in the same sync, which then decides as
 *    kube-proxy would. The socket LB is an accelerator in front of a complete dataplane, never a second opinion.
 *
 * Only uapi headers and libbpf's helper definitions: no CO-RE, so the object loads on any kernel from 5.18 (bpf_set_retval
 * in sock_addr programs) whatever its BTF. Built with -DSVP_NO_SET_RETVAL for 5.8-5.17, where a refusal is EPERM.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"

#define SVP_IPPROTO_TCP 6
#define SVP_IPPROTO_UDP 17
#define SVP_ECONNREFUSED 111

/* Return values of sock_addr programs. */
#define SYS_REJECT 0
#define SYS_PROCEED 1

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SVP_MAX_SERVICES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct svp_svc_key);
  __type(value, struct svp_svc_val);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} svp_svc SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SVP_MAX_SLOTS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct svp_slot_key);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} svp_slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SVP_MAX_SLOTS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct svp_member_key);
  __type(value, __u8);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} svp_member SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SVP_MAX_BACKENDS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u32);
  __type(value, struct svp_backend);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} svp_backends SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, SVP_MAX_RNAT);
  __type(key, struct svp_rnat_key);
  __type(value, struct svp_rnat_val);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} svp_rnat SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, SVP_MAX_AFFINITY);
  __type(key, struct svp_aff_key);
  __type(value, struct svp_aff_val);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} svp_aff SEC(".maps");

enum verdict { PASS, XLATE, REFUSE };

static __always_inline int refuse(void) {
#ifndef SVP_NO_SET_RETVAL
  bpf_set_retval(-SVP_ECONNREFUSED);
#endif
  return SYS_REJECT;
}

/* TCP: a random slot per connection. UDP: the socket cookie, so the datagrams of one unconnected socket keep going
 * to one backend (Cilium's reason: a fresh pick per sendmsg would scatter one client's flow). */
static __always_inline __u32 slot_seed(struct bpf_sock_addr *ctx, __u8 proto) {
  if (proto == SVP_IPPROTO_UDP) return (__u32)bpf_get_socket_cookie(ctx);
  return bpf_get_prandom_u32();
}

static __always_inline int addr_is_v4mapped(const __be32 *a) {
  return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* Frontend -> backend. On XLATE, *out is the backend. */
static __always_inline enum verdict xlate_fwd(struct bpf_sock_addr *ctx, const struct svp_svc_key *key, struct svp_backend *out) {
  struct svp_svc_val *svc = bpf_map_lookup_elem(&svp_svc, key);
  if (!svc) return PASS;
  __u32 set = svc->set;
  __u32 count = svc->count;
  __u16 flags = svc->flags;
  __u64 timeout_ns = (__u64)svc->affinity_secs * 1000000000ULL;
  if (count == 0) return REFUSE;

  __u64 now = 0;
  __u32 backend_id = 0;
  int remembered = 0;
  struct svp_aff_key ak;
  __builtin_memset(&ak, 0, sizeof(ak));
  if (flags & SVP_F_AFFINITY) {
    ak.netns_cookie = bpf_get_netns_cookie(ctx);
    ak.set = set;
    now = bpf_ktime_get_ns();
    struct svp_aff_val *av = bpf_map_lookup_elem(&svp_aff, &ak);
    if (av && now - av->last_ns < timeout_ns) {
      struct svp_member_key mk;
      __builtin_memset(&mk, 0, sizeof(mk));
      mk.set = set;
      mk.backend = av->backend;
      if (bpf_map_lookup_elem(&svp_member, &mk)) {
        backend_id = av->backend;
        av->last_ns = now;
        remembered = 1;
      }
    }
  }
  if (!remembered) {
    __u32 seed = slot_seed(ctx, key->proto);
    struct svp_slot_key sk;
    __builtin_memset(&sk, 0, sizeof(sk));
    sk.set = set;
    sk.slot = seed % count + 1;
    __u32 *id = bpf_map_lookup_elem(&svp_slots, &sk);
    if (!id) {
      /* The count read above was older than the slots: the agent shrank the set meanwhile (it writes the count
       * before deleting slots). Read the Service again and pick once more; still nothing: let nftables decide. */
      svc = bpf_map_lookup_elem(&svp_svc, key);
      if (!svc || svc->count == 0) return PASS;
      sk.set = svc->set;
      sk.slot = seed % svc->count + 1;
      id = bpf_map_lookup_elem(&svp_slots, &sk);
      if (!id) return PASS;
    }
    backend_id = *id;
  }
  struct svp_backend *be = bpf_map_lookup_elem(&svp_backends, &backend_id);
  if (!be) return PASS;
  if ((flags & SVP_F_AFFINITY) && !remembered) {
    struct svp_aff_val av;
    __builtin_memset(&av, 0, sizeof(av));
    av.last_ns = now;
    av.backend = backend_id;
    bpf_map_update_elem(&svp_aff, &ak, &av, BPF_ANY);
  }
  __builtin_memcpy(out, be, sizeof(*out));

  /* Remember the frontend for recvmsg/getpeername. Written only when it differs (a UDP socket's every sendmsg). An
   * LRU entry lost to pressure only makes getpeername/recvmsg show the pod address. */
  struct svp_rnat_key rk;
  __builtin_memset(&rk, 0, sizeof(rk));
  rk.cookie = bpf_get_socket_cookie(ctx);
  __builtin_memcpy(rk.addr, be->addr, sizeof(rk.addr));
  rk.port = be->port;
  struct svp_rnat_val rv;
  __builtin_memset(&rv, 0, sizeof(rv));
  __builtin_memcpy(rv.addr, key->addr, sizeof(rv.addr));
  rv.port = key->port;
  rv.set = set;
  struct svp_rnat_val *old = bpf_map_lookup_elem(&svp_rnat, &rk);
  if (!old || old->port != rv.port || old->set != rv.set || old->addr[0] != rv.addr[0] || old->addr[1] != rv.addr[1] ||
      old->addr[2] != rv.addr[2] || old->addr[3] != rv.addr[3])
    bpf_map_update_elem(&svp_rnat, &rk, &rv, BPF_ANY);
  return XLATE;
}

/* Backend -> the frontend this socket dialled, if it is still that Service's. */
static __always_inline struct svp_rnat_val *xlate_rev(struct bpf_sock_addr *ctx, const __be32 *addr, __u8 proto) {
  struct svp_rnat_key rk;
  __builtin_memset(&rk, 0, sizeof(rk));
  rk.cookie = bpf_get_socket_cookie(ctx);
  __builtin_memcpy(rk.addr, addr, sizeof(rk.addr));
  rk.port = (__be16)ctx->user_port;
  struct svp_rnat_val *rv = bpf_map_lookup_elem(&svp_rnat, &rk);
  if (!rv) return 0;
  struct svp_svc_key key;
  __builtin_memset(&key, 0, sizeof(key));
  __builtin_memcpy(key.addr, rv->addr, sizeof(key.addr));
  key.port = rv->port;
  key.proto = proto;
  struct svp_svc_val *svc = bpf_map_lookup_elem(&svp_svc, &key);
  if (!svc || svc->set != rv->set) {
    bpf_map_delete_elem(&svp_rnat, &rk);
    return 0;
  }
  return rv;
}

static __always_inline int tcp_or_udp(struct bpf_sock_addr *ctx) {
  return ctx->protocol == SVP_IPPROTO_TCP || ctx->protocol == SVP_IPPROTO_UDP;
}

static __always_inline void key4(struct bpf_sock_addr *ctx, struct svp_svc_key *key) {
  __builtin_memset(key, 0, sizeof(*key));
  key->addr[2] = bpf_htonl(0xffff);
  key->addr[3] = ctx->user_ip4;
  key->port = (__be16)ctx->user_port; /* a 4-byte load: the kernel refuses narrower reads of user_port */
  key->proto = (__u8)ctx->protocol;
}

static __always_inline void key6(struct bpf_sock_addr *ctx, struct svp_svc_key *key) {
  __builtin_memset(key, 0, sizeof(*key));
  key->addr[0] = ctx->user_ip6[0];
  key->addr[1] = ctx->user_ip6[1];
  key->addr[2] = ctx->user_ip6[2];
  key->addr[3] = ctx->user_ip6[3];
  key->port = (__be16)ctx->user_port;
  key->proto = (__u8)ctx->protocol;
}

static __always_inline int fwd4(struct bpf_sock_addr *ctx) {
  if (!tcp_or_udp(ctx)) return SYS_PROCEED;
  struct svp_svc_key key;
  struct svp_backend be;
  key4(ctx, &key);
  enum verdict v = xlate_fwd(ctx, &key, &be);
  if (v == REFUSE) return refuse();
  if (v == XLATE && addr_is_v4mapped(be.addr)) {
    ctx->user_ip4 = be.addr[3];
    ctx->user_port = (__u32)be.port;
  }
  return SYS_PROCEED;
}

static __always_inline int fwd6(struct bpf_sock_addr *ctx) {
  if (!tcp_or_udp(ctx)) return SYS_PROCEED;
  struct svp_svc_key key;
  struct svp_backend be;
  key6(ctx, &key);
  enum verdict v = xlate_fwd(ctx, &key, &be);
  if (v == REFUSE) return refuse();
  if (v == XLATE) {
    /* A v4-mapped frontend has v4 backends, written v4-mapped: the dual-stack socket connects over IPv4. */
    ctx->user_ip6[0] = be.addr[0];
    ctx->user_ip6[1] = be.addr[1];
    ctx->user_ip6[2] = be.addr[2];
    ctx->user_ip6[3] = be.addr[3];
    ctx->user_port = (__u32)be.port;
  }
  return SYS_PROCEED;
}

static __always_inline int rev4(struct bpf_sock_addr *ctx) {
  if (!tcp_or_udp(ctx)) return SYS_PROCEED;
  __be32 addr[4] = {0, 0, bpf_htonl(0xffff), ctx->user_ip4};
  struct svp_rnat_val *rv = xlate_rev(ctx, addr, (__u8)ctx->protocol);
  if (rv && addr_is_v4mapped(rv->addr)) {
    ctx->user_ip4 = rv->addr[3];
    ctx->user_port = (__u32)rv->port;
  }
  return SYS_PROCEED; /* recvmsg and getpeername programs must return 1 */
}

static __always_inline int rev6(struct bpf_sock_addr *ctx) {
  if (!tcp_or_udp(ctx)) return SYS_PROCEED;
  __be32 addr[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
  struct svp_rnat_val *rv = xlate_rev(ctx, addr, (__u8)ctx->protocol);
  if (rv) {
    ctx->user_ip6[0] = rv->addr[0];
    ctx->user_ip6[1] = rv->addr[1];
    ctx->user_ip6[2] = rv->addr[2];
    ctx->user_ip6[3] = rv->addr[3];
    ctx->user_port = (__u32)rv->port;
  }
  return SYS_PROCEED;
}

SEC("cgroup/connect4") int svp_connect4(struct bpf_sock_addr *ctx) { return fwd4(ctx); }
SEC("cgroup/connect6") int svp_connect6(struct bpf_sock_addr *ctx) { return fwd6(ctx); }
/* sendmsg: unconnected UDP (sendto with an address); connected sockets were translated at connect(). */
SEC("cgroup/sendmsg4") int svp_sendmsg4(struct bpf_sock_addr *ctx) { return fwd4(ctx); }
SEC("cgroup/sendmsg6") int svp_sendmsg6(struct bpf_sock_addr *ctx) { return fwd6(ctx); }
SEC("cgroup/recvmsg4") int svp_recvmsg4(struct bpf_sock_addr *ctx) { return rev4(ctx); }
SEC("cgroup/recvmsg6") int svp_recvmsg6(struct bpf_sock_addr *ctx) { return rev6(ctx); }
SEC("cgroup/getpeername4") int svp_getpeername4(struct bpf_sock_addr *ctx) { return rev4(ctx); }
SEC("cgroup/getpeername6") int svp_getpeername6(struct bpf_sock_addr *ctx) { return rev6(ctx); }
