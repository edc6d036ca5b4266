// Numbers from the kernel uAPI (linux/netfilter/nf_tables.h, linux/netfilter.h) and libnftnl's attribute
// enums (libnftnl/{table,chain,rule,set,expr}.h, libnftnl 1.2.x). The addon passes attribute numbers through
// untouched, so these must match the libnftnl it is built against; test/kernel/nft-roundtrip checks them.

export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;
export type NfFamily = typeof NFPROTO_IPV4 | typeof NFPROTO_IPV6;

export const NF_INET_PRE_ROUTING = 0;
export const NF_INET_LOCAL_IN = 1;
export const NF_INET_FORWARD = 2;
export const NF_INET_LOCAL_OUT = 3;
export const NF_INET_POST_ROUTING = 4;

export const TABLE = { NAME: 0, FAMILY: 1, FLAGS: 2, USE: 3, HANDLE: 4, USERDATA: 5 } as const;
/** NFT_TABLE_F_DORMANT: the table's base chains are unhooked, so none of its rules sees a packet. */
export const NFT_TABLE_F_DORMANT = 0x1;
export const CHAIN = {
  NAME: 0, FAMILY: 1, TABLE: 2, HOOKNUM: 3, PRIO: 4, POLICY: 5, USE: 6, BYTES: 7, PACKETS: 8, HANDLE: 9, TYPE: 10,
} as const;
export const RULE = { FAMILY: 0, TABLE: 1, CHAIN: 2, HANDLE: 3, POSITION: 6, USERDATA: 7 } as const;
export const SET = {
  TABLE: 0, NAME: 1, FLAGS: 2, KEY_TYPE: 3, KEY_LEN: 4, DATA_TYPE: 5, DATA_LEN: 6, FAMILY: 7, ID: 8, POLICY: 9,
  DESC_SIZE: 10, TIMEOUT: 11, GC_INTERVAL: 12, USERDATA: 13, DESC_CONCAT: 16,
} as const;
export const ELEM = { FLAGS: 0, KEY: 1, VERDICT: 2, CHAIN: 3, DATA: 4, TIMEOUT: 5, EXPIRATION: 6, USERDATA: 7, KEY_END: 10 } as const;
/** nft's user-data TLV type for an element comment (libnftnl udata.h NFTNL_UDATA_SET_ELEM_COMMENT). */
export const UDATA_SET_ELEM_COMMENT = 0;

// Expression attributes: NFTNL_EXPR_NAME is 0, every expression's own attributes start at NFTNL_EXPR_BASE (1).
export const EXPR_NAME = 0;
export const PAYLOAD = { DREG: 1, BASE: 2, OFFSET: 3, LEN: 4 } as const;
export const NUMGEN = { DREG: 1, MODULUS: 2, TYPE: 3, OFFSET: 4 } as const;
export const META = { KEY: 1, DREG: 2, SREG: 3 } as const;
export const CMP = { SREG: 1, OP: 2, DATA: 3 } as const;
export const IMM = { DREG: 1, DATA: 2, VERDICT: 3, CHAIN: 4 } as const;
export const BITWISE = { SREG: 1, DREG: 2, LEN: 3, MASK: 4, XOR: 5, OP: 6 } as const;
export const NAT = { TYPE: 1, FAMILY: 2, REG_ADDR_MIN: 3, REG_ADDR_MAX: 4, REG_PROTO_MIN: 5, REG_PROTO_MAX: 6, FLAGS: 7 } as const;
export const LOOKUP = { SREG: 1, DREG: 2, SET: 3, SET_ID: 4, FLAGS: 5 } as const;
/** libnftnl's NFTNL_EXPR_DYNSET_* (TIMEOUT: u64 milliseconds, host order). */
export const DYNSET = { SREG_KEY: 1, SREG_DATA: 2, OP: 3, TIMEOUT: 4, SET_NAME: 5, SET_ID: 6, FLAGS: 9 } as const;
export const NFT_DYNSET_OP_ADD = 0;
export const NFT_DYNSET_OP_UPDATE = 1;
export const CT = { DREG: 1, KEY: 2, DIR: 3, SREG: 4 } as const;
export const REJECT = { TYPE: 1, CODE: 2 } as const;
export const MASQ = { FLAGS: 1, REG_PROTO_MIN: 2, REG_PROTO_MAX: 3 } as const;
export const FIB = { DREG: 1, RESULT: 2, FLAGS: 3 } as const;

// Registers: NFT_REG_1.. are 16 bytes wide; NFT_REG32_00.. are 4 bytes (concatenations use consecutive ones).
export const NFT_REG_VERDICT = 0;
export const NFT_REG_1 = 1;
export const NFT_REG_2 = 2;
export const NFT_REG32_00 = 8;

// Verdicts (signed in the kernel; carried as u32)
export const NF_DROP = 0;
export const NF_ACCEPT = 1;
export const NFT_CONTINUE = -1;
export const NFT_RETURN = -5;
export const NFT_JUMP = -3;
export const NFT_GOTO = -4;

export const NFT_PAYLOAD_NETWORK_HEADER = 1;
export const NFT_PAYLOAD_TRANSPORT_HEADER = 2;
export const NFT_CMP_EQ = 0;
export const NFT_CMP_NEQ = 1;
export const NFT_META_MARK = 3;
export const NFT_META_IIFNAME = 6;
export const NFT_META_L4PROTO = 16;
export const NFT_CT_STATE = 0;
export const NFT_CT_STATUS = 2;
export const NFT_NG_RANDOM = 1;
export const NFT_NAT_DNAT = 1;
export const NFT_REJECT_ICMP_UNREACH = 0;
export const NFT_REJECT_TCP_RST = 1;
export const NFTA_FIB_F_SADDR = 1;
export const NFTA_FIB_F_DADDR = 2;
export const NFT_FIB_RESULT_ADDRTYPE = 3;
export const RTN_LOCAL = 2;
export const NFT_BITWISE_BOOL = 0;
export const NFT_LOOKUP_F_INV = 1;

export const NFT_SET_MAP = 0x8;
/** NFT_SET_TIMEOUT | NFT_SET_EVAL: elements expire; rules add them (dynset). nft calls these "flags timeout, dynamic". */
export const NFT_SET_TIMEOUT = 0x10;
export const NFT_SET_EVAL = 0x20;
/** NFT_SET_INTERVAL | NFT_SET_CONCAT: a set of concatenated ranges (the kernel's pipapo backend). */
export const NFT_SET_INTERVAL = 0x4;
export const NFT_SET_CONCAT = 0x80;
export const NFT_SET_ELEM_INTERVAL_END = 0x1;
export const NFT_DATA_VERDICT = 0xffffff00;

// conntrack
export const CT_STATE_NEW = 1 << 3; // NF_CT_STATE_BIT(IP_CT_NEW)
export const IPS_DST_NAT = 1 << 5;
// nat range flags (linux/netfilter/nf_nat.h)
export const NF_NAT_RANGE_MAP_IPS = 1;
export const NF_NAT_RANGE_PROTO_SPECIFIED = 2;
export const NF_NAT_RANGE_PROTO_RANDOM_FULLY = 16;

export const ICMP_PORT_UNREACH = 3;
export const ICMPV6_PORT_UNREACH = 4;

// nft userspace datatype ids, only for how `nft list` prints our sets (the kernel does not interpret them).
export const TYPE_VERDICT = 1;
export const TYPE_IPADDR = 7;
export const TYPE_IP6ADDR = 8;
export const TYPE_INET_PROTOCOL = 12;
export const TYPE_INET_SERVICE = 13;
export const TYPE_MARK = 19;
export const TYPE_BITS = 6;
export function concatType(...types: number[]): number {
  return types.reduce((acc, t) => acc * (1 << TYPE_BITS) + t, 0) >>> 0;
}

export const IPPROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;
