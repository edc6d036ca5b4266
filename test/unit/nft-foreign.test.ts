// Other tables' base chains that may take Service traffic before svcplane (foreign.ts), and the nf_tables listing
// decoders they are read with (src/netlink/nftables.ts). The decoders get replies built here in the kernel's layout;
// test/kernel/nftables-foreign.test.ts reads real ones.
import { describe, expect, it } from 'vitest';
import { describeForeign, foreignChains, runsBeforeSvcplane } from '../../src/dataplane/nftables/foreign';
import type { HookChain } from '../../src/dataplane/nftables/hook-chains';
import {
  NF_ACCEPT, NF_DROP, NF_INET_FORWARD, NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, NFPROTO_IPV4, NFPROTO_IPV6,
} from '../../src/dataplane/nftables/netlink/constants';
import { type ListedRule, NFPROTO_INET, decodeChain, decodeRule, decodeTable } from '../../src/netlink/nftables';
import { NLMSG_DONE, oneMessage } from '../../src/netlink/message';

const NFT_MSG = (m: number) => (10 << 8) | m;
const NFT_JUMP = -3;

function rule(exprs: string[], more: Partial<ListedRule> = {}): ListedRule {
  return { family: NFPROTO_IPV4, table: 't', chain: 'c', exprs, verdicts: [], targets: [], verdictMap: false, nat: [], ...more };
}

function chain(more: Partial<HookChain>): HookChain {
  return { family: NFPROTO_IPV4, table: 'other', chain: 'c', type: 'nat', hook: NF_INET_PRE_ROUTING, priority: -150, policy: NF_ACCEPT, rules: [], ...more };
}

const dnat = rule(['payload', 'cmp', 'immediate', 'nat'], { nat: ['dnat'] });

describe('foreignChains: what may take Service traffic before svcplane', () => {
  it('a nat chain that DNATs at prerouting before svcplane\'s DNAT (priority -100), or with it', () => {
    for (const priority of [-150, -100]) {
      const [f] = foreignChains([chain({ priority, rules: [dnat] })], 'svcplane');
      expect(f).toMatchObject({ family: 'ip', table: 'other', hook: 'prerouting', priority, before: { chain: 'nat-prerouting', priority: -100 }, can: ['dnat'], ipFamilies: [4] });
    }
  });

  it('not after svcplane\'s chain at that hook, nor at hooks where svcplane has already decided', () => {
    expect(foreignChains([chain({ priority: -99, rules: [dnat] })], 'svcplane')).toEqual([]);
    expect(foreignChains([chain({ hook: NF_INET_LOCAL_IN, priority: -500, rules: [rule(['reject'])] })], 'svcplane')).toEqual([]);
    expect(foreignChains([chain({ hook: NF_INET_POST_ROUTING, priority: -500, rules: [rule(['masq'])] })], 'svcplane')).toEqual([]);
    // forward: before svcplane's filter-forward at -110.
    expect(foreignChains([chain({ type: 'filter', hook: NF_INET_FORWARD, priority: 0, policy: NF_DROP })], 'svcplane')).toEqual([]);
    expect(foreignChains([chain({ type: 'filter', hook: NF_INET_FORWARD, priority: -200, policy: NF_DROP })], 'svcplane')[0]?.can).toEqual(['policy drop']);
  });

  it('counts what ends a packet\'s path whatever it matched; not accept, counters or marks', () => {
    const can = (r: ListedRule) => foreignChains([chain({ type: 'filter', hook: NF_INET_LOCAL_OUT, rules: [r] })], 'svcplane')[0]?.can ?? [];
    expect(can(rule(['payload', 'cmp', 'immediate'], { verdicts: [NF_DROP] }))).toEqual(['drop']);
    expect(can(rule(['payload', 'cmp', 'reject']))).toEqual(['reject']);
    expect(can(rule(['queue']))).toEqual(['queue']);
    expect(can(rule(['redir']))).toEqual(['redirect']);
    expect(can(rule(['tproxy']))).toEqual(['tproxy']);
    expect(can(rule(['payload', 'lookup'], { verdictMap: true }))).toEqual(['verdict map']);
    expect(can(rule(['payload', 'cmp', 'immediate'], { verdicts: [NF_ACCEPT] }))).toEqual([]);
    expect(can(rule(['payload', 'cmp', 'counter', 'meta']))).toEqual([]);
  });

  it('follows the rules the reader gathered (jump targets included) and adds a drop policy', () => {
    const [f] = foreignChains([chain({ policy: NF_DROP, rules: [rule(['immediate'], { verdicts: [NFT_JUMP], targets: ['sub'] }), dnat] })], 'svcplane');
    expect(f.can).toEqual(['dnat', 'policy drop']);
  });

  it('never svcplane\'s own tables; inet chains see both families; other families none', () => {
    expect(foreignChains([chain({ table: 'svcplane', rules: [dnat] }), chain({ family: NFPROTO_IPV6, table: 'svcplane', rules: [dnat] })], 'svcplane')).toEqual([]);
    expect(foreignChains([chain({ family: NFPROTO_INET, table: 'svcplane', rules: [dnat] })], 'svcplane')[0]?.ipFamilies).toEqual([4, 6]);
    expect(foreignChains([chain({ family: 7 /* bridge */, rules: [dnat] })], 'svcplane')).toEqual([]);
    expect(runsBeforeSvcplane('svcplane')(chain({ table: 'svcplane' }))).toBe(false);
    expect(runsBeforeSvcplane('svcplane')(chain({ table: 'svcplane-test' }))).toBe(true);
  });

  it('says it in one sentence', () => {
    const [f] = foreignChains([chain({ rules: [dnat] })], 'svcplane');
    expect(describeForeign(f)).toBe('a foreign rule at the same hook may take Service traffic before svcplane: table ip other chain c ' +
      '(type nat hook prerouting priority -150, before svcplane\'s nat-prerouting at -100) can dnat; svcplane leaves it alone');
  });
});

describe('listing decoders (nf_tables replies, attributes in network order)', () => {
  it('decodes a table with its flags', () => {
    const msg = oneMessage((w) => w.begin(NFT_MSG(0), 2).header([NFPROTO_INET, 0, 0, 0]).string(1, 'fw').be32(2, 1).end());
    expect(decodeTable(msg)).toEqual({ family: NFPROTO_INET, name: 'fw', flags: 1 });
  });

  it('decodes a base chain (negative priority, drop policy) and a regular chain', () => {
    const base = oneMessage((w) => {
      w.begin(NFT_MSG(3), 2).header([NFPROTO_IPV4, 0, 0, 0]).string(1, 'fw').string(3, 'pre');
      const h = w.nestStart(4);
      w.be32(1, NF_INET_PRE_ROUTING).be32(2, -150);
      w.nestEnd(h);
      w.be32(5, NF_DROP).string(7, 'nat').end();
    });
    expect(decodeChain(base)).toEqual({ family: NFPROTO_IPV4, table: 'fw', name: 'pre', hook: { type: 'nat', hooknum: NF_INET_PRE_ROUTING, priority: -150, policy: NF_DROP } });
    const regular = oneMessage((w) => w.begin(NFT_MSG(3), 2).header([NFPROTO_IPV4, 0, 0, 0]).string(1, 'fw').string(3, 'sub').end());
    expect(decodeChain(regular)).toEqual({ family: NFPROTO_IPV4, table: 'fw', name: 'sub' });
  });

  it('decodes a rule\'s expressions, verdicts, jump targets, verdict maps and nat kinds', () => {
    const msg = oneMessage((w) => {
      w.begin(NFT_MSG(6), 2).header([NFPROTO_IPV4, 0, 0, 0]).string(1, 'fw').string(2, 'pre');
      const list = w.nestStart(4);
      const expr = (name: string, data?: () => void) => {
        const e = w.nestStart(1);
        w.string(1, name);
        if (data) {
          const d = w.nestStart(2);
          data();
          w.nestEnd(d);
        }
        w.nestEnd(e);
      };
      expr('payload');
      expr('lookup', () => w.string(1, 'vmap').be32(2, 1).be32(3, 0));
      expr('nat', () => w.be32(1, 1));
      expr('immediate', () => {
        w.be32(1, 0);
        const data = w.nestStart(2);
        const verdict = w.nestStart(2);
        w.be32(1, NFT_JUMP).string(2, 'sub');
        w.nestEnd(verdict);
        w.nestEnd(data);
      });
      w.nestEnd(list);
      w.end();
    });
    expect(decodeRule(msg)).toEqual({
      family: NFPROTO_IPV4, table: 'fw', chain: 'pre', exprs: ['payload', 'lookup', 'nat', 'immediate'],
      verdicts: [NFT_JUMP], targets: ['sub'], verdictMap: true, nat: ['dnat'],
    });
  });

  it('ignores other messages', () => {
    const done = oneMessage((w) => w.begin(NLMSG_DONE, 2).header([0, 0, 0, 0]).end());
    expect([decodeTable(done), decodeChain(done), decodeRule(done)]).toEqual([undefined, undefined, undefined]);
  });
});
