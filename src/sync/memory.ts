// Handing V8's heap back when the agent goes quiet.
//
// What a burst of syncs leaves behind is not objects the agent keeps: after 200k EndpointSlice updates at 10k
// Services the live heap is what it was after the first sync (~33 MB, heap snapshots before and after), yet RSS
// stayed at ~300 MB. The rest is heap V8 holds and no longer needs: garbage promoted to old space (each update's
// parsed slice and Service port live until that Service's next update, long enough to be promoted) and a new space
// grown to its 16 MB semi-spaces. V8 returns such memory in a memory-reducing GC, which its memory reducer starts
// only once it sees a low allocation rate. That rate is sampled at GCs, and an idle agent allocates nothing, so it
// does not GC: the last busy samples stand, the reducer keeps "waiting", and only its watchdog, ~100 s after the
// last GC, starts the GC (measured: 292 MB for 100 s, then 195 MB). The same holds after the initial full sync
// (149 MB idle with ~33 MB live).
//
// So once no sync has run for a while, and V8's heap has grown since the last time, the agent starts a full GC
// itself: vm.measureMemory with execution 'eager' starts one at once, incremental like V8's own (no --expose-gc, no
// V8 flag changed). At 10k Services after the churn: heap 160 -> 54 MB committed, RSS 227 -> 120 MB. V8 shrinks
// its new space at the end of a GC only if less than 1 KB/ms was allocated since the GC before (a 5 s window at
// least): ~12 MB allocated by the last sync and 10 s of quiet is just above that, and the 32 MB new space stayed
// (seen after the first full sync). Then one more collection a quiet period later, with nothing allocated since.
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import type { Logger } from '../log';
import type { Clock, Timer } from './clock';

/** No sync for this long: the agent is quiet. Long enough that syncs 1 s apart (minSyncPeriod) never trigger it. */
export const QUIET_MS = 10_000;
/** Heap growth (committed) since the last collection below which a quiet agent is left alone. */
export const MIN_GROWTH_BYTES = 16 * 1024 * 1024;
/** A new space committing more than this after a collection was not shrunk (shrunk: 1 MB; grown: up to 32 MB). */
export const YOUNG_SHRUNK_BYTES = 8 * 1024 * 1024;

/** V8's committed heap, bytes (what it holds of the process's memory, garbage included). */
export function heapCommitted(): number {
  return v8.getHeapStatistics().total_heap_size;
}

/** V8's committed new space, bytes. */
export function youngCommitted(): number {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;
}

/**
 * A full GC, started now, incremental, resolved when it is done. vm.measureMemory says once per process that it is
 * experimental, as a warning line on stderr outside the JSON log: that call's warning is silenced, no other.
 */
export function collectGarbage(): Promise<void> {
  const emit = process.emitWarning;
  process.emitWarning = () => undefined;
  let measured: Promise<unknown>;
  try {
    measured = vm.measureMemory({ mode: 'summary', execution: 'eager' });
  } finally {
    process.emitWarning = emit;
  }
  return measured.then(() => undefined);
}

export interface IdleHeapReleaseOptions {
  clock: Clock;
  log: Logger;
  quietMs?: number;
  /** Injected by tests; default heapCommitted and collectGarbage. */
  heapSize?: () => number;
  youngSize?: () => number;
  collect?: () => Promise<void>;
}

/**
 * Arms after each sync; when the agent stays quiet and the heap grew since the last collection, collects (once, or
 * twice when the first left the new space grown).
 */
export class IdleHeapRelease {
  private timer: Timer | undefined;
  private syncing = false;
  private stopped = false;
  private collecting = false;
  /** Committed heap right after the last collection (0: none yet). */
  private baseline = 0;
  collections = 0;

  constructor(private readonly o: IdleHeapReleaseOptions) {}

  /** A sync is starting: not quiet. */
  busy(): void {
    this.syncing = true;
    this.cancel();
  }

  /** A sync ended: quiet from now, unless another starts within quietMs. */
  quietFromNow(): void {
    this.syncing = false;
    this.releaseWhenQuiet(false);
  }

  stop(): void {
    this.stopped = true;
    this.cancel();
  }

  private cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private releaseWhenQuiet(again: boolean): void {
    this.cancel();
    if (this.stopped) return;
    this.timer = this.o.clock.after(this.o.quietMs ?? QUIET_MS, () => {
      this.timer = undefined;
      void this.release(again);
    });
  }

  /** `again`: the follow-up of a collection that left the new space grown (done whatever the heap's growth). */
  private async release(again: boolean): Promise<void> {
    const size = this.o.heapSize ?? heapCommitted;
    const before = size();
    // Growth relative to what the heap holds when clean, so a big agent does not collect after every small change.
    if (this.collecting || (!again && before - this.baseline < Math.max(MIN_GROWTH_BYTES, this.baseline / 4))) return;
    this.collecting = true;
    let ok = false;
    try {
      await (this.o.collect ?? collectGarbage)();
      ok = true;
      this.collections++;
      this.o.log.debug('quiet: V8 heap collected and handed back', { heapMBBefore: mb(before), heapMBAfter: mb(size()) });
    } catch (e) {
      this.o.log.debug('quiet: heap collection failed', { error: (e as Error).message });
    } finally {
      this.baseline = size();
      this.collecting = false;
    }
    // Unless a sync started meanwhile (its end re-arms the ordinary way).
    if (ok && !again && !this.syncing && this.timer === undefined && (this.o.youngSize ?? youngCommitted)() > YOUNG_SHRUNK_BYTES) this.releaseWhenQuiet(true);
  }
}

function mb(bytes: number): number {
  return Math.round(bytes / 1048576);
}
