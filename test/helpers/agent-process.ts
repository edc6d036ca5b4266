// `svcplane run` as a child process with JSON logs: its log lines as they come, and waits on them (no fixed sleeps).
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { SVCPLANE } from './cli';

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** The running agent: its process, its log lines, and helpers to wait on them. */
export class AgentProcess {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcess;
  private waiters: Array<() => void> = [];

  /** `svcplane run ARGS` in this process's namespace, or a process started otherwise (e.g. in a namespace). */
  constructor(args: string[] | ChildProcess) {
    this.proc = Array.isArray(args) ? spawn(process.execPath, [SVCPLANE, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) : args;
    let buf = '';
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ level: 'raw', msg: line });
        }
        for (const w of this.waiters) w();
      }
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  syncs(): LogLine[] {
    return this.lines.filter((l) => l.msg === 'synced');
  }

  /** Waits for a log line matching `pred` after index `from`. */
  async waitFor(pred: (l: LogLine) => boolean, from = 0, timeoutMs = 60_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no matching log line in ${timeoutMs} ms; log:\n${this.lines.map((l) => JSON.stringify(l)).join('\n')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
      this.waiters = [];
    }
  }

  /** Waits for the next successful sync after the current log position. */
  nextSync(timeoutMs = 60_000): Promise<LogLine> {
    return this.waitFor((l) => l.msg === 'synced', this.lines.length, timeoutMs);
  }

  kill(signal: NodeJS.Signals): void {
    this.proc.kill(signal);
  }
}


/** A TCP port on 127.0.0.1 nobody holds now, for the agent's healthz and metrics addresses. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}
