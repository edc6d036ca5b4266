// The NftClient contract (test/contract/nft-client.contract.ts) against the in-memory fake the unit tests use.
import { FakeNftClient } from '../../src/dataplane/nftables/fake';
import { nftClientContract } from '../contract/nft-client.contract';

nftClientContract('FakeNftClient', async () => {
  const client = new FakeNftClient();
  return { client, done: () => client.close() };
});
