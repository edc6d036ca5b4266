// The one small interface between the nftables dataplane and the kernel, with the real implementation (the
// addon over netlink). test/ holds a transactional fake held to the same contract.
import { native, type CheckResult, type CommitResult, type NftCommitError } from '../../native';
import { type BaseChainInfo, type HookChain, HookChainReader } from './hook-chains';
import { refusalHint } from './kernel';
import type { NfFamily } from './netlink/constants';
import type { TableState } from './objects';
import { decodeTable } from './state';
import type { NftTransaction } from './transaction';

export interface NftClient {
  /** Sends the transaction as one batch: all of it is applied, or (rejecting) none of it. */
  run(tx: NftTransaction): Promise<CommitResult>;
  /** The kernel's verdict on every operation of the transaction, which is never committed (probing constructs). */
  check(tx: NftTransaction): Promise<CheckResult>;
  /** What the kernel holds for one table, or undefined when the table does not exist. */
  dumpTable(family: NfFamily, table: string): Promise<TableState | undefined>;
  /** Every table's base chains (any writer's), with the rules of those `withRules` selects (hook-chains.ts). */
  hookChains?(withRules: (c: BaseChainInfo) => boolean): Promise<HookChain[]>;
  /** The ruleset generation: it moves with every commit, anyone's (a refused batch leaves it). */
  generation?(): Promise<number>;
  close(): void;
}

/** A kernel refusal, rephrased with the Kubernetes object that owned the failing operation. */
export class NftTransactionError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly errno: number,
    readonly operationIndex: number,
    readonly object: string,
    readonly owner: string | undefined,
  ) {
    super(message);
    this.name = 'NftTransactionError';
  }
}

function isCommitError(e: unknown): e is NftCommitError {
  return e instanceof Error && typeof (e as Partial<NftCommitError>).errno === 'number';
}

export class NetlinkNftClient implements NftClient {
  private readonly sock;
  private readonly hooks: HookChainReader;

  constructor(options: { netns?: string } = {}) {
    this.sock = new (native().NftSocket)(options.netns ? { netns: options.netns } : {});
    this.hooks = new HookChainReader(options);
  }

  async run(tx: NftTransaction): Promise<CommitResult> {
    if (tx.size === 0) return { operations: 0, messages: 0, bytes: 0, kernelMicros: 0, totalMicros: 0 };
    try {
      return await this.sock.commit(tx.records());
    } catch (e) {
      if (!isCommitError(e) || typeof e.index !== 'number') throw e;
      const op = e.index >= 0 ? tx.operation(e.index) : undefined;
      const owner = op?.owner;
      // A refused expression (or set) may be a construct this kernel lacks: say so in words, not only the errno.
      const hint = await refusalHint(this, e.expression?.name ?? (op?.verb === 'add set' ? 'set' : undefined));
      const message = `${owner ? `${owner}: ` : ''}${e.message}${hint}`;
      throw new NftTransactionError(message, e.code, e.errno, e.index, e.object, owner);
    }
  }

  async check(tx: NftTransaction): Promise<CheckResult> {
    if (tx.size === 0) return { errors: [], lostReports: false };
    return this.sock.check(tx.records());
  }

  async dumpTable(family: NfFamily, table: string): Promise<TableState | undefined> {
    const r = await this.sock.dump(family, table);
    if (!r.exists) return undefined;
    return decodeTable(family, r.records);
  }

  generation(): Promise<number> {
    return this.sock.generation();
  }

  hookChains(withRules: (c: BaseChainInfo) => boolean): Promise<HookChain[]> {
    return this.hooks.read(withRules);
  }

  get socket() {
    return this.sock;
  }

  close(): void {
    this.sock.close();
    this.hooks.close();
  }
}
