// Diagnosis only (bench/daemon.ts with SVCPLANE_BENCH_DIAG=DIR): preloaded into the agent with --require, never
// part of the product or of the published figures. On SIGUSR2 it writes the agent's V8 heap statistics (used vs
// allocated heap, per space; external and ArrayBuffer memory; RSS) to DIR/<label>.json and its /proc smaps (V8's
// pages, glibc's arenas) to DIR/<label>.smaps, and with SVCPLANE_BENCH_SNAPSHOT=1 a heap snapshot
// DIR/<label>.heapsnapshot first. The label is read from DIR/next-label.
// No garbage collection is forced: what is reported is what the agent holds as shipped (a snapshot does collect).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v8 from 'node:v8';

const dir = process.env.SVCPLANE_DIAG_DIR;
const MB = (b: number) => Math.round((b / 1048576) * 10) / 10;

function rssMB(): number {
  const s = fs.readFileSync('/proc/self/status', 'utf8');
  return Math.round(Number(/^VmRSS:\s+(\d+) kB/m.exec(s)?.[1] ?? 0) / 1024);
}

function stats(): Record<string, unknown> {
  const h = v8.getHeapStatistics();
  const m = process.memoryUsage();
  const spaces: Record<string, { usedMB: number; sizeMB: number; committedMB: number }> = {};
  for (const s of v8.getHeapSpaceStatistics()) {
    spaces[s.space_name] = { usedMB: MB(s.space_used_size), sizeMB: MB(s.space_size), committedMB: MB(s.physical_space_size) };
  }
  return {
    rssMB: rssMB(), heapUsedMB: MB(h.used_heap_size), heapTotalMB: MB(h.total_heap_size), heapCommittedMB: MB(h.total_physical_size),
    mallocedMB: MB(h.malloced_memory), externalMB: MB(m.external), arrayBuffersMB: MB(m.arrayBuffers), spaces,
  };
}

if (dir) {
  process.on('SIGUSR2', () => {
    const label = fs.readFileSync(path.join(dir, 'next-label'), 'utf8').trim();
    const before = stats();
    if (process.env.SVCPLANE_BENCH_SNAPSHOT === '1') v8.writeHeapSnapshot(path.join(dir, `${label}.heapsnapshot`));
    fs.writeFileSync(path.join(dir, `${label}.smaps`), fs.readFileSync('/proc/self/smaps'));
    fs.writeFileSync(path.join(dir, `${label}.json`), JSON.stringify(before));
  });
}
