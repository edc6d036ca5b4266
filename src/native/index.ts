// Loads the addon built by node-gyp (build/Release). Types are hand-written in native/index.d.ts.
import * as path from 'node:path';
import type * as Native from '../../native/index';

export type { CheckResult, CommitResult, DumpResult, NftCommitError, BatchErrorInfo, NetlinkRequestResult, PackedTransactResult, TransactResult } from '../../native/index';

let loaded: typeof Native | undefined;

export function native(): typeof Native {
  if (!loaded) {
    // dist/src/native/index.js and src/native/index.ts (under vitest) both sit three levels below the repository root.
    const root = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require(path.join(root, 'build', 'Release', 'svcplane_native.node')) as typeof Native;
  }
  return loaded;
}
