// The NftClient contract (test/contract/nft-client.contract.ts) against the real kernel: NetlinkNftClient in a
// fresh network namespace per test. The fake is held to whatever this run shows.
import { describe } from 'vitest';
import { NetlinkNftClient } from '../../src/dataplane/nftables/client';
import { nftClientContract } from '../contract/nft-client.contract';
import { makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('nft-kernel-contract');

describe.runIf(haveRoot)('kernel', () => {
  nftClientContract('NetlinkNftClient', async () => {
    const ns = makeNetns('kc');
    let client: NetlinkNftClient;
    try {
      client = new NetlinkNftClient({ netns: ns.path });
    } catch (e) {
      ns.remove();
      throw e;
    }
    return {
      client,
      done() {
        client.close();
        ns.remove();
      },
    };
  });
});
