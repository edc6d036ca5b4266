// Logs as kube-proxy's (klog): the text layout by default, JSON on request, verbosity as -v.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, type LoggerOptions } from '../../src/log';

function capture(opts: LoggerOptions = {}) {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _enc, done) => { lines.push(chunk.toString()); done(); } });
  const log = createLogger({ stream, now: () => new Date('2026-12-02T03:13:24.123Z'), pid: 4242, ...opts });
  return { log, lines };
}

describe('logs', () => {
  it('klog\'s text layout by default: severity, MMDD, time, pid, caller file:line, quoted message, key=value', () => {
    const { log, lines } = capture();
    log.info('starting', { mode: 'nftables', node: 'node-a', minSyncPeriodMs: 1000, addresses: ['10.0.0.1/32'] }); const line = new Error().stack!.split('\n')[1].match(/:(\d+):\d+\)?$/)![1];
    log.warn('watch failed; retrying', { error: 'connect ECONNREFUSED' });
    log.error('sync failed');
    expect(lines).toEqual([
      `I1202 03:13:24.123000    4242 log.test.ts:${line}] "starting" mode="nftables" node="node-a" minSyncPeriodMs=1000 addresses=["10.0.0.1/32"]\n`,
      `W1202 03:13:24.123000    4242 log.test.ts:${Number(line) + 1}] "watch failed; retrying" error="connect ECONNREFUSED"\n`,
      `E1202 03:13:24.123000    4242 log.test.ts:${Number(line) + 2}] "sync failed"\n`,
    ]);
  });

  it('verbosity as klog\'s -v: 0 says starts, failures and changes; 2 adds every sync; 4 adds debug', () => {
    for (const [v, want] of [[0, ['info', 'warn']], [2, ['detail', 'info', 'warn']], [4, ['debug', 'detail', 'info', 'warn']]] as const) {
      const { log, lines } = capture({ format: 'json', verbosity: v });
      log.debug('debug');
      log.detail('detail');
      log.info('info');
      log.warn('warn');
      expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(want);
    }
  });

  it('JSON lines with --logging-format json: ts, level, v, caller, msg, then the fields', () => {
    const { log, lines } = capture({ format: 'json', verbosity: 2 });
    log.detail('synced', { full: true, operations: 0 });
    expect(JSON.parse(lines[0])).toEqual({ ts: '2026-12-02T03:13:24.123Z', level: 'detail', v: 2, caller: expect.stringMatching(/^log\.test\.ts:\d+$/), msg: 'synced', full: true, operations: 0 });
  });
});
