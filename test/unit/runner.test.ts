import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/sync/clock';
import { BoundedFrequencyRunner } from '../../src/sync/runner';

function harness(opts: { min: number; max: number; burst?: number; runMs?: number }) {
  const clock = new FakeClock();
  const runs: number[] = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  const fn = async () => {
    concurrent++;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    runs.push(clock.now());
    if (opts.runMs) await new Promise<void>((r) => clock.after(opts.runMs!, r));
    concurrent--;
  };
  const r = new BoundedFrequencyRunner(fn, { minIntervalMs: opts.min, maxIntervalMs: opts.max, burstRuns: opts.burst ?? 1, clock });
  r.start();
  return { clock, r, runs, maxConcurrent: () => maxConcurrent };
}

describe('BoundedFrequencyRunner', () => {
  it('runs at once when asked, then no more often than minInterval', async () => {
    const { clock, r, runs } = harness({ min: 1000, max: 60_000 });
    r.run();
    await clock.advance(0);
    expect(runs).toEqual([0]);
    // Three requests inside the interval fold into one run at its end.
    await clock.advance(100);
    r.run();
    await clock.advance(100);
    r.run();
    r.run();
    await clock.advance(500);
    expect(runs).toEqual([0]);
    await clock.advance(300);
    expect(runs).toEqual([0, 1000]);
    await clock.advance(5000);
    expect(runs).toEqual([0, 1000]);
  });

  it('allows a burst of back-to-back runs, then applies the rate', async () => {
    const { clock, r, runs } = harness({ min: 1000, max: 60_000, burst: 2 });
    r.run();
    await clock.advance(0);
    r.run();
    await clock.advance(0);
    r.run();
    await clock.advance(0);
    expect(runs).toEqual([0, 0]);
    await clock.advance(1000);
    expect(runs).toEqual([0, 0, 1000]);
  });

  it('with minInterval 0 runs every request, one at a time', async () => {
    const { clock, r, runs, maxConcurrent } = harness({ min: 0, max: 60_000, runMs: 10 });
    r.run();
    await clock.advance(1);
    r.run();
    r.run();
    await clock.advance(9);
    expect(runs).toEqual([0, 10]);
    await clock.advance(100);
    expect(runs).toEqual([0, 10]);
    expect(maxConcurrent()).toBe(1);
  });

  it('runs every maxInterval without being asked, counted from the last run', async () => {
    const { clock, r, runs } = harness({ min: 1000, max: 30_000 });
    await clock.advance(30_000);
    expect(runs).toEqual([30_000]);
    await clock.advance(10_000);
    r.run();
    await clock.advance(0);
    await clock.advance(30_000);
    expect(runs).toEqual([30_000, 40_000, 70_000]);
  });

  it('retryAfter brings a run forward, but never later than one already due', async () => {
    const { clock, r, runs } = harness({ min: 0, max: 30_000 });
    r.retryAfter(2000);
    r.retryAfter(5000);
    await clock.advance(1999);
    expect(runs).toEqual([]);
    await clock.advance(1);
    expect(runs).toEqual([2000]);
    // The retry was consumed by that run: nothing more until the periodic one.
    await clock.advance(29_999);
    expect(runs).toEqual([2000]);
    await clock.advance(1);
    expect(runs).toEqual([2000, 32_000]);
  });

  it('a request during a run is served after it, and stop waits for the run in flight', async () => {
    const { clock, r, runs } = harness({ min: 0, max: 60_000, runMs: 50 });
    r.run();
    await clock.advance(10);
    r.run();
    const stopped = r.stop();
    let done = false;
    void stopped.then(() => (done = true));
    await clock.advance(10);
    expect(done).toBe(false);
    await clock.advance(40);
    expect(done).toBe(true);
    // Stopped: the pending request is dropped.
    await clock.advance(60_000);
    expect(runs).toEqual([0]);
  });
});
