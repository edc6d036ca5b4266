// What svcplane's table does with the first packet of a new connection, found by running the rules the kernel holds
// the way the kernel runs them (nf_tables_core.c): each base chain of the table at the hooks the packet passes, in
// priority order, with the chain's policy; in each rule, expressions in order over the kernel's register file, a
// failed comparison or lookup ending the rule; jump, goto and return; NAT applied as it happens, so later chains
// see the new destination; lookups answered by the elements dumped. `explain` reads its verdict from this, so it
// says what the kernel does even where the maps alone would say otherwise (the order of the checks, the addresses
// NodePorts are served on, which sources count as pods).
//
// The path, by where the client is:
//   from off the node: prerouting, then (by the destination after DNAT) input, or forward and postrouting;
//   from the node itself: output and postrouting, then prerouting and input again over loopback when the
//   destination is local. A NAT chain sees a connection's first packet once per direction of NAT (DNAT at
//   prerouting/output, SNAT at postrouting/input), as nf_nat_inet_fn does.
// `numgen random` is the only choice: every value is tried, each outcome carrying its probability.
// Not evaluated: other tables (foreign.ts says when one may run first), conntrack beyond "new, and DNATed or not".
import { bytesToIp, ipToBytes } from '../../model/ip';
import {
  BITWISE, CMP, CT, EXPR_NAME, FIB, IMM, LOOKUP, META, NAT, NFPROTO_IPV4, NFTA_FIB_F_DADDR, NFTA_FIB_F_SADDR, NFT_CT_STATE,
  NFT_CT_STATUS, NFT_FIB_RESULT_ADDRTYPE, NFT_GOTO, NFT_JUMP, NFT_LOOKUP_F_INV, NFT_META_IIFNAME, NFT_META_L4PROTO, NFT_META_MARK, NFT_NAT_DNAT,
  NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_RETURN, NFT_CONTINUE, NF_ACCEPT, NF_DROP, NF_INET_FORWARD, NF_INET_LOCAL_IN,
  NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, NFT_SET_INTERVAL, NUMGEN, PAYLOAD, CT_STATE_NEW, IPS_DST_NAT, RTN_LOCAL,
} from './netlink/constants';
import { hostU32, parseRuleBody } from './netlink/expr';
import { attrI32, attrString, attrU32, type AttrMap } from '../../native/recordStream';
import type { ChainState, ElementState, TableState } from './objects';
import { policyOf } from './objects';

/** The first packet of a new connection. */
export interface NewConnection {
  saddr: string;
  daddr: string;
  /** IPPROTO number (6, 17, 132). */
  protocol: number;
  dport: number;
  /**
   * The interface it arrives on, from off the node (`meta iifname`, which pod detection by interface reads);
   * undefined: not known, and rules reading it are not evaluated. From the node itself there is none ("").
   */
  iifname?: string;
}

export interface PathEnvironment {
  /** `fib ... type local`: whether an address is the node's (its interfaces' addresses; loopback is added here). */
  isLocal(address: string): boolean;
}

/** An element a rule's lookup found (not those of inverted lookups, which match on absence). */
export interface FoundElement {
  set: string;
  element: ElementState;
}

/** A rule whose expressions all held, so its action ran. */
export interface MatchedRule {
  chain: string;
  index: number;
  found: FoundElement[];
  action: 'continue' | 'accept' | 'drop' | 'jump' | 'goto' | 'return' | 'dnat' | 'masquerade' | 'reject';
}

export interface PathOutcome {
  /** Share of new connections taking this path (numgen's choices multiplied). */
  probability: number;
  fate: 'dnat' | 'rejected' | 'dropped' | 'untouched';
  /** After DNAT: where the connection goes. */
  endpoint?: { address: string; port: number };
  masquerade: boolean;
  /** Every rule that matched, in the order the packet met them; the last is the one that decided. */
  matched: MatchedRule[];
  /** A base chain whose policy dropped the packet (no rule gave a verdict). */
  policyDrop?: string;
  /** Expressions this evaluator does not know (a hand edit): such a rule is taken as not matching. */
  unknown: string[];
}

const NEXT = Symbol('next rule');
/** Rule bodies parsed once: a flow is walked once per numgen value, through the same few dozen rules. */
const parsed = new WeakMap<Buffer, AttrMap[]>();
function expressions(body: Buffer): AttrMap[] {
  let exprs = parsed.get(body);
  if (!exprs) parsed.set(body, (exprs = parseRuleBody(body)));
  return exprs;
}
type RuleVerdict = { kind: 'accept' } | { kind: 'drop' } | { kind: 'return' } | { kind: 'jump' | 'goto'; chain: string };

/** nft_regs: the 16-byte verdict register, then NFT_REG_1..4 (16 bytes each) = NFT_REG32_00..15 (4 bytes each). */
class Registers {
  readonly data = Buffer.alloc(80);
  static offset(reg: number): number {
    return reg <= 4 ? reg * 16 : 16 + (reg - 8) * 4;
  }
  read(reg: number, len: number): Buffer {
    const o = Registers.offset(reg);
    return this.data.subarray(o, o + len);
  }
  /** As the kernel stores a value of `len` bytes: the last 32-bit word it touches zeroed first. */
  write(reg: number, value: Buffer): void {
    const o = Registers.offset(reg);
    const words = Math.ceil(value.length / 4);
    this.data.fill(0, o, o + words * 4);
    value.copy(this.data, o);
  }
}

interface Packet {
  family: 4 | 6;
  saddr: Buffer;
  daddr: Buffer;
  protocol: number;
  sport: number;
  dport: number;
  mark: number;
  dnat: boolean;
  iifname?: string;
}

/** Which NAT direction a hook's NAT chains set up (nf_nat_inet_fn: each once per connection). */
const NAT_KIND: Record<number, 'dst' | 'src'> = {
  [NF_INET_PRE_ROUTING]: 'dst', [NF_INET_LOCAL_OUT]: 'dst', [NF_INET_POST_ROUTING]: 'src', [NF_INET_LOCAL_IN]: 'src',
};

class Walk {
  readonly matched: MatchedRule[] = [];
  readonly unknown: string[] = [];
  masquerade = false;
  /** Set when the packet goes no further. */
  stopped: 'rejected' | 'dropped' | undefined;
  policyDrop?: string;
  private choice = 0;
  readonly moduli: number[] = [];
  private readonly natDone = new Set<'dst' | 'src'>();

  constructor(private readonly t: TableState, readonly p: Packet, private readonly env: PathEnvironment, private readonly choices: number[]) {}

  /** Runs the hooks of the path, until the packet is delivered or stopped. */
  run(fromNode: boolean): void {
    const local = () => this.env.isLocal(bytesToIp(this.p.daddr));
    const hooks = fromNode ? [NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING] : [NF_INET_PRE_ROUTING];
    for (const h of hooks) if (!this.hook(h)) return;
    if (fromNode) {
      // A local destination goes round through loopback: prerouting and input, NAT already set up.
      this.p.iifname = 'lo';
      if (local() && this.hook(NF_INET_PRE_ROUTING)) this.hook(NF_INET_LOCAL_IN);
      return;
    }
    if (local()) this.hook(NF_INET_LOCAL_IN);
    else if (this.hook(NF_INET_FORWARD)) this.hook(NF_INET_POST_ROUTING);
  }

  /** The table's base chains at one hook, by priority. False: the packet goes no further. */
  private hook(hook: number): boolean {
    const chains = [...this.t.chains.values()].filter((c) => c.base?.hook === hook).sort((a, b) => a.base!.priority - b.base!.priority);
    const nat = NAT_KIND[hook];
    let natted = false;
    for (const c of chains) {
      // NAT chains run until one of them NATs, and only while this direction of NAT is not set up yet.
      if (c.base!.type === 'nat' && (!nat || this.natDone.has(nat) || natted)) continue;
      const before = this.p.dnat || this.masquerade;
      if (this.chain(c) === NF_DROP) {
        this.stopped ??= 'dropped';
        return false;
      }
      if (!before && (this.p.dnat || this.masquerade)) natted = true;
    }
    if (nat && chains.some((c) => c.base!.type === 'nat')) this.natDone.add(nat);
    return true;
  }

  /** Runs a base chain to its verdict: NF_ACCEPT or NF_DROP (reject is a drop that answers). */
  private chain(base: ChainState): number {
    const stack: Array<{ chain: ChainState; next: number }> = [];
    let chain = base;
    let i = 0;
    for (let steps = 0; steps < 100_000; steps++) {
      if (i >= chain.rules.length) {
        const up = stack.pop();
        if (!up) return this.policy(base);
        chain = up.chain;
        i = up.next;
        continue;
      }
      const index = i++;
      const r = this.rule(chain, index);
      if (r === NEXT) continue;
      if (r.kind === 'accept') return NF_ACCEPT;
      if (r.kind === 'drop') return NF_DROP;
      if (r.kind === 'return') {
        const up = stack.pop();
        if (!up) return this.policy(base);
        chain = up.chain;
        i = up.next;
        continue;
      }
      const target = this.t.chains.get(r.chain);
      if (!target) continue;
      if (r.kind === 'jump') stack.push({ chain, next: i });
      chain = target;
      i = 0;
    }
    throw new Error(`chain ${base.name}: no verdict after 100000 rules (a loop?)`);
  }

  private policy(base: ChainState): number {
    const v = policyOf(base);
    if (v === NF_DROP) this.policyDrop = base.name;
    return v;
  }

  /** One rule: NEXT when an expression fails (or the rule ends without a verdict), else its verdict. */
  private rule(chain: ChainState, index: number): typeof NEXT | RuleVerdict {
    const regs = new Registers();
    const found: FoundElement[] = [];
    const exprs = expressions(chain.rules[index]);
    const done = (action: MatchedRule['action']) => this.matched.push({ chain: chain.name, index, found, action });
    for (const e of exprs) {
      const name = attrString(e, EXPR_NAME) ?? '?';
      const r = this.expr(name, e, regs, found);
      if (r === 'break') return NEXT;
      if (r === 'unknown') {
        this.unknown.push(`${name} (rule ${index} of chain ${chain.name})`);
        return NEXT;
      }
      if (r === 'continue') continue;
      if (r === 'dnat' || r === 'masquerade') {
        done(r);
        return { kind: 'accept' };
      }
      if (r === 'reject') {
        done('reject');
        this.stopped = 'rejected';
        return { kind: 'drop' };
      }
      done(r.kind);
      return r;
    }
    done('continue');
    return NEXT;
  }

  private expr(name: string, e: AttrMap, regs: Registers, found: FoundElement[]):
    'break' | 'continue' | 'unknown' | 'dnat' | 'masquerade' | 'reject' | RuleVerdict {
    const u = (type: number) => attrU32(e, type) ?? 0;
    const p = this.p;
    switch (name) {
      case 'payload': {
        const header = u(PAYLOAD.BASE) === NFT_PAYLOAD_NETWORK_HEADER ? networkHeader(p) : u(PAYLOAD.BASE) === NFT_PAYLOAD_TRANSPORT_HEADER ? transportHeader(p) : undefined;
        if (!header) return 'unknown';
        regs.write(u(PAYLOAD.DREG), header.subarray(u(PAYLOAD.OFFSET), u(PAYLOAD.OFFSET) + u(PAYLOAD.LEN)));
        return 'continue';
      }
      case 'meta': {
        const key = u(META.KEY);
        if (e.has(META.SREG)) {
          if (key !== NFT_META_MARK) return 'unknown';
          p.mark = hostValue(regs.read(u(META.SREG), 4));
          return 'continue';
        }
        if (key === NFT_META_L4PROTO) regs.write(u(META.DREG), Buffer.from([p.protocol]));
        else if (key === NFT_META_MARK) regs.write(u(META.DREG), hostU32(p.mark));
        else if (key === NFT_META_IIFNAME && p.iifname !== undefined) {
          // IFNAMSIZ bytes, NUL-padded (nft_meta_store_ifname; "" without an input device).
          const name = Buffer.alloc(16);
          name.write(p.iifname);
          regs.write(u(META.DREG), name);
        } else return 'unknown';
        return 'continue';
      }
      case 'ct': {
        const key = u(CT.KEY);
        if (key === NFT_CT_STATE) regs.write(u(CT.DREG), hostU32(CT_STATE_NEW));
        else if (key === NFT_CT_STATUS) regs.write(u(CT.DREG), hostU32(p.dnat ? IPS_DST_NAT : 0));
        else return 'unknown';
        return 'continue';
      }
      case 'fib': {
        const flags = u(FIB.FLAGS);
        if (u(FIB.RESULT) !== NFT_FIB_RESULT_ADDRTYPE || (flags & ~(NFTA_FIB_F_SADDR | NFTA_FIB_F_DADDR)) !== 0) return 'unknown';
        const addr = flags & NFTA_FIB_F_SADDR ? p.saddr : p.daddr;
        regs.write(u(FIB.DREG), hostU32(this.env.isLocal(bytesToIp(addr)) ? RTN_LOCAL : 1 /* RTN_UNICAST */));
        return 'continue';
      }
      case 'bitwise': {
        const mask = e.get(BITWISE.MASK);
        const xor = e.get(BITWISE.XOR);
        if (u(BITWISE.OP) !== 0 || !mask || !xor) return 'unknown';
        const src = regs.read(u(BITWISE.SREG), u(BITWISE.LEN));
        regs.write(u(BITWISE.DREG), Buffer.from(src.map((b, i) => (b & mask[i]) ^ xor[i])));
        return 'continue';
      }
      case 'cmp': {
        const data = e.get(CMP.DATA) ?? Buffer.alloc(0);
        const c = Buffer.compare(regs.read(u(CMP.SREG), data.length), data);
        const ok = [c === 0, c !== 0, c < 0, c <= 0, c > 0, c >= 0][u(CMP.OP)];
        return ok === undefined ? 'unknown' : ok ? 'continue' : 'break';
      }
      case 'lookup': {
        const set = attrString(e, LOOKUP.SET) ?? '';
        const spec = this.t.sets.get(set);
        const element = spec ? lookup(this.t, set, regs.read(u(LOOKUP.SREG), spec.keyLen)) : undefined;
        const invert = (u(LOOKUP.FLAGS) & NFT_LOOKUP_F_INV) !== 0;
        if (invert) return element ? 'break' : 'continue';
        if (!element) return 'break';
        found.push({ set, element });
        if (e.has(LOOKUP.DREG)) {
          const dreg = u(LOOKUP.DREG);
          if (dreg === 0) return verdictOf(element.verdict, element.chain);
          if (element.data) regs.write(dreg, element.data);
        }
        return 'continue';
      }
      case 'immediate': {
        if (u(IMM.DREG) === 0) return verdictOf(attrI32(e, IMM.VERDICT), attrString(e, IMM.CHAIN));
        const data = e.get(IMM.DATA);
        if (data) regs.write(u(IMM.DREG), data);
        return 'continue';
      }
      case 'numgen': {
        const modulus = u(NUMGEN.MODULUS);
        if (u(NUMGEN.TYPE) !== 1 /* random */ || modulus === 0) return 'unknown';
        const k = this.choices[this.choice] ?? 0;
        this.moduli[this.choice++] = modulus;
        regs.write(u(NUMGEN.DREG), hostU32(k + u(NUMGEN.OFFSET)));
        return 'continue';
      }
      case 'nat': {
        if (u(NAT.TYPE) !== NFT_NAT_DNAT || !e.has(NAT.REG_ADDR_MIN)) return 'unknown';
        p.daddr = Buffer.from(regs.read(u(NAT.REG_ADDR_MIN), p.family === 4 ? 4 : 16));
        if (e.has(NAT.REG_PROTO_MIN)) p.dport = regs.read(u(NAT.REG_PROTO_MIN), 2).readUInt16BE(0);
        p.dnat = true;
        return 'dnat';
      }
      case 'masq':
        this.masquerade = true;
        return 'masquerade';
      case 'reject':
        return 'reject';
      case 'dynset':
      case 'counter':
        // dynset: the kernel remembers the client (sessionAffinity); what this connection gets does not change.
        return 'continue';
      default:
        return 'unknown';
    }
  }
}

function verdictOf(code: number | undefined, chain: string | undefined): RuleVerdict | 'continue' | 'unknown' {
  if (code === NFT_JUMP || code === NFT_GOTO) return { kind: code === NFT_JUMP ? 'jump' : 'goto', chain: chain ?? '' };
  if (code === NFT_RETURN) return { kind: 'return' };
  if (code === NFT_CONTINUE) return 'continue';
  if (code === NF_ACCEPT) return { kind: 'accept' };
  if (code === NF_DROP) return { kind: 'drop' };
  return 'unknown'; // queue, stolen...: not svcplane's
}

function hostValue(b: Buffer): number {
  return hostU32(1)[0] === 1 ? b.readUInt32LE(0) : b.readUInt32BE(0);
}

/** The header fields svcplane's rules read: IPv4 protocol, saddr, daddr; IPv6 next header, saddr, daddr. */
function networkHeader(p: Packet): Buffer {
  if (p.family === 4) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h[9] = p.protocol;
    p.saddr.copy(h, 12);
    p.daddr.copy(h, 16);
    return h;
  }
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h[6] = p.protocol;
  p.saddr.copy(h, 8);
  p.daddr.copy(h, 24);
  return h;
}

/** TCP, UDP and SCTP all start with the source and destination ports. */
function transportHeader(p: Packet): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(p.sport, 0);
  h.writeUInt16BE(p.dport, 2);
  return h;
}

/**
 * The element a key finds in a dumped set: by its bytes, or for a set of (concatenated) ranges the element each of
 * whose fields holds the key's field (fields are 32-bit aligned in the key, as nft_pipapo lays them out).
 */
export function lookup(t: TableState, set: string, key: Buffer): ElementState | undefined {
  const elements = t.elements.get(set);
  if (!elements) return undefined;
  const spec = t.sets.get(set);
  if (!spec || !(spec.flags & NFT_SET_INTERVAL)) return elements.get(key.toString('latin1'));
  const fields = spec.concat ?? [spec.keyLen];
  for (const e of elements.values()) {
    const hi = e.keyEnd ?? e.key;
    let off = 0;
    let inside = true;
    for (const len of fields) {
      const k = key.subarray(off, off + len);
      if (Buffer.compare(k, e.key.subarray(off, off + len)) < 0 || Buffer.compare(k, hi.subarray(off, off + len)) > 0) {
        inside = false;
        break;
      }
      off += Math.ceil(len / 4) * 4;
    }
    if (inside) return e;
  }
  return undefined;
}

/**
 * Every way the first packet of `c` can go through svcplane's table `t` (one per combination of numgen values that
 * changes the outcome), with its probability. A dormant table sees no packet.
 */
export function walkNewConnection(t: TableState, c: NewConnection, env: PathEnvironment, opts: { ignoreDormant?: boolean } = {}): PathOutcome[] {
  const family: 4 | 6 = t.family === NFPROTO_IPV4 ? 4 : 6;
  const isLocal = (a: string) => env.isLocal(a) || (family === 4 ? a.startsWith('127.') : a === '::1');
  const fromNode = isLocal(c.saddr);
  const dormant = (t.flags ?? 0) & 1 && !opts.ignoreDormant;
  const once = (choices: number[]) => {
    const w = new Walk(t, { family, saddr: ipToBytes(c.saddr), daddr: ipToBytes(c.daddr), protocol: c.protocol, sport: 40000, dport: c.dport, mark: 0, dnat: false, iifname: fromNode ? '' : c.iifname }, { isLocal }, choices);
    if (!dormant) w.run(fromNode);
    return w;
  };
  const out: PathOutcome[] = [];
  const explore = (choices: number[], probability: number) => {
    const w = once(choices);
    if (w.moduli.length > choices.length) {
      const m = w.moduli[choices.length];
      for (let k = 0; k < m; k++) explore([...choices, k], probability / m);
      return;
    }
    const fate = w.stopped ?? (w.p.dnat ? 'dnat' : 'untouched');
    out.push({
      probability,
      fate,
      ...(fate === 'dnat' ? { endpoint: { address: bytesToIp(w.p.daddr), port: w.p.dport } } : {}),
      masquerade: w.masquerade,
      matched: w.matched,
      ...(w.policyDrop ? { policyDrop: w.policyDrop } : {}),
      unknown: w.unknown,
    });
  };
  explore([], 1);
  return out;
}
