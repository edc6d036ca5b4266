// What the running kernel's nf_tables accepts, where svcplane's tables depend on a construct that mainline Linux
// gained after 5.4. Production nodes run 5.14 (RHEL 9), 5.15 (Ubuntu 22.04), 6.1 (Debian 12, Amazon Linux 2023)
// and newer; kube-proxy's nftables mode asks for 5.13. The kernel's version says little (distributions backport),
// so every construct is probed instead: at start, one batch holding a throwaway table that uses each construct is
// sent WITHOUT its END message, so the kernel checks every record, reports what it refuses, then aborts: nothing is
// committed, nothing appears in the namespace, and no other writer sees anything (nfnetlink_rcv_batch; `nft
// --check` works the same way). The table is dormant, so its base chain never hooks a packet even while the batch
// is being processed.
//
// A construct either has a fallback (svcplane programs another shape where it is missing, chosen at start, logged
// once and shown by `status`) or is required (svcplane cannot run that mode on such a kernel and says, in words,
// what the kernel lacks and which release has it). The minimum releases come from the kernel's history: the
// mainline release of the commit named beside each.
import * as os from 'node:os';
import type { NftClient } from './client';
import {
  NFPROTO_IPV4, NFT_DYNSET_OP_UPDATE, NFT_PAYLOAD_NETWORK_HEADER, NFT_REG_1, NFT_REJECT_ICMP_UNREACH,
  NFT_SET_CONCAT, NFT_SET_EVAL, NFT_SET_INTERVAL, NFT_SET_MAP, NFT_SET_TIMEOUT, NFT_TABLE_F_DORMANT, NF_INET_PRE_ROUTING, TYPE_IPADDR, TYPE_MARK,
  concatType, ICMP_PORT_UNREACH,
} from './netlink/constants';
import { RuleBuilder } from './netlink/expr';
import { NftTransaction } from './transaction';

export type ConstructId = 'map-membership' | 'concat-ranges' | 'reject-prerouting' | 'dynamic-set-lookup';

export interface NftConstruct {
  id: ConstructId;
  /** What the construct is, for people. */
  title: string;
  /** The kernel part that implements it; a refusal reads "this kernel's <part> cannot <cannot>". */
  part: string;
  cannot: string;
  /** The first mainline release that accepts it, and the commit that made it so. */
  since: string;
  commit: string;
  /** What svcplane programs where the kernel lacks it; absent: svcplane cannot run without it. */
  fallback?: string;
  /** What svcplane uses it for. */
  usedFor: string;
  /** How a refused record that may be this construct shows: the refused rule expression's name, or 'set'. */
  refusedAs: string;
  /** Queues the objects that use the construct into a probe transaction on table `table` (family ip). */
  probe(tx: NftTransaction, table: string): void;
}

const FAMILY = NFPROTO_IPV4;
const daddr = () => new RuleBuilder().payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);

export const CONSTRUCTS: readonly NftConstruct[] = [
  {
    id: 'map-membership',
    title: 'membership test on a map (a lookup without a destination register)',
    part: 'nft_lookup',
    cannot: 'test whether a key is in a map without loading the value it maps to (it wants a destination register)',
    since: '6.5',
    commit: 'netfilter: nf_tables: relax set/map validation checks',
    fallback: 'the services chain\'s membership tests on the endpoint-count maps load the count into a scratch register (the same hash lookup plus a 4-byte copy per new connection)',
    usedFor: 'sending Service traffic to the pick chains (services chain)',
    refusedAs: 'lookup',
    probe(tx, table) {
      tx.addSet(FAMILY, table, { name: 'map', flags: NFT_SET_MAP, keyType: TYPE_IPADDR, keyLen: 4, dataType: TYPE_MARK, dataLen: 4 });
      tx.addChain(FAMILY, table, { name: 'map-membership' });
      tx.addRule(FAMILY, table, 'map-membership', daddr().lookup('map', NFT_REG_1).verdict({ kind: 'accept' }).body());
    },
  },
  {
    id: 'concat-ranges',
    title: 'sets of concatenated ranges (the pipapo set type)',
    part: 'nf_tables',
    cannot: 'hold a set of concatenated ranges (NFT_SET_INTERVAL | NFT_SET_CONCAT with field lengths)',
    since: '5.6',
    commit: 'nf_tables: Add set type for arbitrary concatenation of ranges',
    usedFor: 'loadBalancerSourceRanges (address . protocol . port . source range, one set for every LoadBalancer IP)',
    refusedAs: 'set',
    probe(tx, table) {
      tx.addSet(FAMILY, table, { name: 'ranges', flags: NFT_SET_INTERVAL | NFT_SET_CONCAT, keyType: concatType(TYPE_IPADDR, TYPE_IPADDR), keyLen: 8, concat: [4, 4] });
      tx.addElements(FAMILY, table, 'ranges', [{ key: Buffer.from([198, 18, 0, 1, 198, 18, 1, 0]), keyEnd: Buffer.from([198, 18, 0, 1, 198, 18, 1, 255]) }]);
    },
  },
  {
    id: 'reject-prerouting',
    title: 'reject in a prerouting chain',
    part: 'nft_reject',
    cannot: 'reject in a prerouting chain (only in input, forward and output)',
    since: '5.9',
    commit: 'netfilter: introduce support for reject at prerouting stage',
    usedFor: 'refusing new connections to a Service port without endpoints before DNAT (TCP reset, ICMP port unreachable)',
    refusedAs: 'reject',
    probe(tx, table) {
      tx.addChain(FAMILY, table, { name: 'reject-prerouting', base: { type: 'filter', hook: NF_INET_PRE_ROUTING, priority: 0 } });
      tx.addRule(FAMILY, table, 'reject-prerouting', new RuleBuilder().reject(NFT_REJECT_ICMP_UNREACH, ICMP_PORT_UNREACH).body());
    },
  },
  {
    id: 'dynamic-set-lookup',
    title: 'lookups in a set that rules add to (NFT_SET_EVAL, with timeouts)',
    part: 'nft_lookup',
    cannot: 'look up a key in a set that rules update (a dynamic set)',
    since: '5.4',
    commit: 'netfilter: nf_tables: allow lookups in dynamic sets',
    usedFor: 'sessionAffinity ClientIP (remembered clients, refreshed by the rules themselves)',
    refusedAs: 'lookup',
    probe(tx, table) {
      tx.addSet(FAMILY, table, { name: 'dynamic', flags: NFT_SET_TIMEOUT | NFT_SET_EVAL, keyType: TYPE_IPADDR, keyLen: 4, size: 16 });
      tx.addChain(FAMILY, table, { name: 'dynamic-set-lookup' });
      tx.addRule(FAMILY, table, 'dynamic-set-lookup', daddr().lookup('dynamic', NFT_REG_1).dynset(NFT_DYNSET_OP_UPDATE, 'dynamic', NFT_REG_1, 1000).verdict({ kind: 'accept' }).body());
    },
  },
];

/** The probe's table: never committed, so the name only has to be unique within its own batch. */
export const PROBE_TABLE = 'svcplane-probe';

export interface KernelSupport {
  /** The kernel's release (uname -r), for people: the decisions come from the probe, not from this. */
  release: string;
  /** Constructs this kernel refused. */
  missing: ConstructId[];
}

/** Every construct accepted: what the ruleset assumes when nobody probed (unit tests, goldens). */
export const FULL_SUPPORT: KernelSupport = { release: 'any', missing: [] };

export class NftKernelError extends Error {
  constructor(message: string, readonly missing: ConstructId[]) {
    super(message);
    this.name = 'NftKernelError';
  }
}

export function construct(id: ConstructId): NftConstruct {
  return CONSTRUCTS.find((c) => c.id === id)!;
}

export function supports(k: KernelSupport | undefined, id: ConstructId): boolean {
  return !k || !k.missing.includes(id);
}

/** "this kernel's nft_lookup cannot ...; that needs Linux 6.5 (commit "...")". */
export function missingInWords(c: NftConstruct): string {
  return `this kernel's ${c.part} cannot ${c.cannot}; that needs Linux ${c.since} (commit "${c.commit}")`;
}

/**
 * Which constructs the kernel behind `client` accepts: one never-committed batch. Throws when the kernel refuses
 * the probe's table itself (no nf_tables at all) or the refusals could not all be read.
 */
export async function probeKernel(client: NftClient, constructs: readonly NftConstruct[] = CONSTRUCTS): Promise<KernelSupport> {
  const tx = new NftTransaction();
  tx.owner = 'table';
  tx.addTable(FAMILY, PROBE_TABLE, NFT_TABLE_F_DORMANT);
  for (const c of constructs) {
    tx.owner = c.id;
    c.probe(tx, PROBE_TABLE);
  }
  const r = await client.check(tx);
  if (r.lostReports) throw new Error('probing nf_tables: the kernel\'s refusals overflowed the receive buffer');
  const missing = new Set<ConstructId>();
  for (const e of r.errors) {
    const owner = e.index >= 0 ? tx.operation(e.index)?.owner : undefined;
    if (owner === undefined || owner === 'table') {
      // Not a construct: no nf_tables at all, or no permission (EPERM without CAP_NET_ADMIN). Keep the errno.
      const err = new Error(`probing nf_tables: ${e.object}: ${strerror(e.code)} (${e.code})${e.kernelMessage ? ` - kernel says: ${e.kernelMessage}` : ''}`);
      throw Object.assign(err, { code: e.code, errno: e.errno });
    }
    missing.add(owner as ConstructId);
  }
  return { release: os.release(), missing: constructs.map((c) => c.id).filter((id) => missing.has(id)) };
}

const ERRNO_TEXT: Record<string, string> = { EPERM: 'Operation not permitted', EPROTONOSUPPORT: 'Protocol not supported', ENOENT: 'No such file or directory', EINVAL: 'Invalid argument', EOPNOTSUPP: 'Operation not supported' };
function strerror(code: string): string {
  return ERRNO_TEXT[code] ?? code;
}

/** Throws NftKernelError naming every required construct (of `needed`) the kernel lacks. */
export function requireConstructs(k: KernelSupport, needed: readonly ConstructId[], mode: string): void {
  const lacking = needed.filter((id) => k.missing.includes(id) && !construct(id).fallback);
  if (lacking.length === 0) return;
  const why = lacking.map((id) => `${missingInWords(construct(id))}; svcplane uses it for ${construct(id).usedFor}`).join('. ');
  throw new NftKernelError(`svcplane's ${mode} mode cannot run on this kernel (${k.release}): ${why}`, lacking);
}

export interface ConstructReport {
  id: ConstructId;
  title: string;
  since: string;
  supported: boolean;
  /** What svcplane does instead, when not supported and there is a fallback. */
  instead?: string;
}

export interface KernelReport {
  release: string;
  constructs: ConstructReport[];
  /** One line: the shape chosen for this kernel. */
  shape: string;
}

export function kernelReport(k: KernelSupport, needed: readonly ConstructId[] = CONSTRUCTS.map((c) => c.id)): KernelReport {
  const constructs = needed.map((id) => {
    const c = construct(id);
    const supported = !k.missing.includes(id);
    return { id, title: c.title, since: c.since, supported, ...(supported || !c.fallback ? {} : { instead: c.fallback }) };
  });
  const fallbacks = constructs.filter((c) => !c.supported);
  const shape = fallbacks.length === 0
    ? 'every construct native (the fastest shape)'
    : fallbacks.map((c) => `no ${c.id} (Linux ${c.since}): ${c.instead ?? 'not available'}`).join('; ');
  return { release: k.release, constructs, shape };
}

/**
 * Words for a refused record: the constructs of its kind (the refused expression, or a set) that the kernel turns
 * out to lack, found by probing them now. Empty when the refusal is something else.
 */
export async function refusalHint(client: NftClient, refusedAs: string | undefined): Promise<string> {
  if (!refusedAs) return '';
  const candidates = CONSTRUCTS.filter((c) => c.refusedAs === refusedAs);
  if (candidates.length === 0) return '';
  try {
    const k = await probeKernel(client, candidates);
    return k.missing.map((id) => ` - ${missingInWords(construct(id))}`).join('');
  } catch {
    return '';
  }
}
