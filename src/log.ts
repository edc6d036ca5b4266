// Logs as kube-proxy writes them (klog, component-base): by default klog's text layout,
//   I1202 03:13:24.123456   12345 agent.js:81] "starting" mode="nftables" node="node-a"
// (severity I/W/E, month and day, time to the microsecond, process id, the caller's file:line, the message quoted,
// then key=value pairs with strings quoted), and JSON lines with --logging-format json (here: ts, level, v, caller,
// msg, then the fields). Verbosity as klog's -v: 0 says starts, failures and changes; 2 adds every sync (`detail`,
// e.g. a full sync that changed nothing); 4 and more add watch and transaction detail (`debug`).
import * as path from 'node:path';

export type Level = 'debug' | 'detail' | 'info' | 'warn' | 'error';

/** The klog verbosity a level needs to be written (errors and warnings always are). */
const VERBOSITY: Record<Level, number> = { error: 0, warn: 0, info: 0, detail: 2, debug: 4 };
const SEVERITY: Record<Level, string> = { error: 'E', warn: 'W', info: 'I', detail: 'I', debug: 'I' };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  /** Verbosity 2: routine events worth seeing when asked (every sync). */
  detail(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  /** klog's -v (default 0). */
  verbosity?: number;
  /** text: klog's layout (default); json: one object per line. */
  format?: 'json' | 'text';
  stream?: NodeJS.WritableStream;
  /** For tests: the clock and process id the text layout shows. */
  now?: () => Date;
  pid?: number;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const stream = opts.stream ?? process.stderr;
  const format = opts.format ?? 'text';
  const verbosity = opts.verbosity ?? 0;
  const now = opts.now ?? (() => new Date());
  const pid = opts.pid ?? process.pid;
  const write = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (VERBOSITY[level] > verbosity) return;
    const caller = callerOf();
    if (format === 'json') {
      stream.write(JSON.stringify({ ts: now().toISOString(), level, v: VERBOSITY[level], caller, msg, ...fields }) + '\n');
      return;
    }
    const extra = fields ? Object.entries(fields).map(([k, v]) => ` ${k}=${klogValue(v)}`).join('') : '';
    stream.write(`${SEVERITY[level]}${klogTime(now())} ${String(pid).padStart(7)} ${caller}] ${JSON.stringify(msg)}${extra}\n`);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    detail: (m, f) => write('detail', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/** klog's header time: MMDD hh:mm:ss.uuuuuu, UTC (as in containers). */
function klogTime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}000`;
}

/** As klog's text format writes a value: strings and structures quoted (JSON), numbers and booleans bare. */
function klogValue(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return JSON.stringify(v);
}

/** file:line of the code that called the logger (the first stack frame outside this file), as klog shows it. */
function callerOf(): string {
  const holder: { stack?: string } = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 6;
  Error.captureStackTrace(holder, callerOf);
  Error.stackTraceLimit = limit;
  for (const line of (holder.stack ?? '').split('\n').slice(1)) {
    const m = /\(?([^()\s]+):(\d+):\d+\)?$/.exec(line.trim());
    if (m && path.basename(m[1]) !== path.basename(__filename)) return `${path.basename(m[1])}:${m[2]}`;
  }
  return '???:1';
}

export const silentLogger: Logger = { debug() {}, detail() {}, info() {}, warn() {}, error() {} };
