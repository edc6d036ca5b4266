// `svcplane bench`: how long this kernel takes to program N Services in each mode, and how endpoint churn behaves,
// in a throwaway network namespace (src/bench/). An interrupted run (SIGINT, SIGTERM) stops at the next point
// between kernel operations, removes what it made (the mode's objects: a --netns namespace keeps nothing of the
// bench's; the ebpf cgroup and pins) and exits 130 (143); a second signal exits at once.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BENCH_SCHEMA } from '../bench/schema';
import { benchOptions } from '../bench/options';
import { openBenchNode } from '../bench/node';
import { terminalProgress } from '../bench/progress';
import { benchPlot, formatBenchReport } from '../bench/report';
import { BenchInterrupted, runBench, stopRequest } from '../bench/run';
import { type ParsedFlags, UsageError, bool, list, str } from './args';

export async function cmdBench(flags: ParsedFlags, out: (s: string) => void): Promise<number> {
  if (bool(flags, 'schema')) {
    out(JSON.stringify(BENCH_SCHEMA, null, 2));
    return 0;
  }
  const options = benchOptions({ mode: str(flags, 'mode'), services: list(flags, 'services'), endpoints: str(flags, 'endpoints'), churn: str(flags, 'churn'), duration: str(flags, 'duration'), warmup: str(flags, 'warmup'), output: str(flags, 'output'), netns: str(flags, 'netns'), peers: bool(flags, 'peers') });
  const plot = str(flags, 'plot');
  if (plot !== undefined && (!plot.endsWith('.svg') || !fs.existsSync(path.dirname(path.resolve(plot))))) throw new UsageError(`--plot takes FILE.svg in an existing directory, not "${plot}"`);
  const node = await openBenchNode(options.netns);
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      node.close();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    signalled = signal;
    stopRequest.requested = true;
    process.stderr.write(`\nsvcplane bench: ${signal}: removing what the bench made (again to quit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const report = await runBench(options, node, terminalProgress());
    if (plot) fs.writeFileSync(plot, `${benchPlot(report)}\n`);
    out(options.output === 'json' ? JSON.stringify(report, null, 2) : formatBenchReport(report));
    return 0;
  } catch (e) {
    if (e instanceof BenchInterrupted) return signalled === 'SIGTERM' ? 143 : 130;
    throw e;
  } finally {
    stopRequest.requested = false;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    node.close();
  }
}
