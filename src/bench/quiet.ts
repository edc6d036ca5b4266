// Waiting for the machine to be quiet before a timed run (the repository benchmarks do, before every sample). A
// namespace is freed by the kernel in a kworker after its last reference goes: after a peer loaded 250k iptables
// rules (or was killed at its time limit mid-batch), that clean-up keeps a CPU busy for seconds, and on a 2-CPU
// machine it slowed the next timed run by up to 2x (a 5k x 50 svcplane sync measured 2.7 s in the full run, 1.3 s
// alone). So each sample first waits until a short window of /proc/stat shows the CPUs mostly idle, and the wait is
// reported.
import * as fs from 'node:fs';

function cpuTimes(): { busy: number; total: number } {
  // First line: "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (USER_HZ ticks).
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface QuietWait {
  /** How long we waited, ms. */
  waitedMs: number;
  /** CPU busy fraction (all CPUs) in the last window before the run. */
  busy: number;
}

/**
 * Resolves once a `windowMs` window had less than `maxBusy` of all CPUs busy (or after `limitMs`, reporting the
 * last window's load), then runs the garbage collector if node was started with --expose-gc, so one sample does
 * not pay for the previous one's garbage.
 */
export async function waitForQuiet(maxBusy = 0.15, windowMs = 500, limitMs = 60_000): Promise<QuietWait> {
  const t0 = Date.now();
  let busy = 1;
  for (;;) {
    const a = cpuTimes();
    await sleep(windowMs);
    const b = cpuTimes();
    busy = b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
    if (busy < maxBusy || Date.now() - t0 > limitMs) break;
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) gc();
  return { waitedMs: Date.now() - t0, busy: Math.round(busy * 1000) / 1000 };
}
