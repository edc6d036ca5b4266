// One svcplane writer per network namespace. Two agents on a node (a second DaemonSet, a `sync --once` by hand
// beside the agent) would each repair the other's changes on every sync. Every command that writes (run, sync,
// cleanup) holds this lock; status and explain only read and do not.
//
// The lock is an abstract unix socket bound inside the namespace being programmed (native/abstract_socket.h), not a
// file: abstract names are per network namespace, so the lock is exactly as wide as what it protects (two nodes'
// namespaces on one host never collide, and `--netns` locks the namespace it programs); it vanishes with the
// holder's process however that ends (SIGKILL, OOM), so it can never be left stale; and it needs no writable
// filesystem (read-only root in a container) nor a shared mount between the writers. The kernel names the holder
// (SO_PEERCRED), and the holder answers each connection with a line saying who it is, which also reaches a
// contender in another PID namespace (another pod).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { native } from '../native';

export const WRITER_LOCK_NAME = 'svcplane.io/writer';

/** Another svcplane writer holds the namespace; the message names it. */
export class WriterLockError extends Error {
  constructor(message: string, readonly holder: HolderInfo | undefined) {
    super(message);
    this.name = 'WriterLockError';
  }
}

export interface HolderInfo {
  pid?: number;
  command?: string;
  host?: string;
  since?: string;
}

export interface WriterLock {
  release(): void;
}

/**
 * Takes the writer lock of the namespace at `netns` (default: this process's), or throws WriterLockError naming the
 * process that holds it. `command` is what a contender is told this process is (default: its command line).
 */
export async function acquireWriterLock(options: { netns?: string; command?: string } = {}): Promise<WriterLock> {
  const command = options.command ?? ['svcplane', ...process.argv.slice(2)].join(' ');
  const me: HolderInfo = { pid: process.pid, command, host: os.hostname(), since: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = native().listenAbstract(WRITER_LOCK_NAME, options.netns);
    } catch (e) {
      if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
      const holder = await describeHolder(options.netns);
      // Released between our bind and our look: try again (a few times; a holder that keeps flapping is reported).
      if (holder === 'gone' && attempt < 3) continue;
      throw new WriterLockError(refusal(options.netns, holder === 'gone' ? undefined : holder), holder === 'gone' ? undefined : holder);
    }
    // Node accepts the holder's connections and tells each contender who holds the lock; unref'd, so holding the
    // lock never keeps the process alive.
    const server = net.createServer((c) => {
      c.on('error', () => undefined);
      c.end(`${JSON.stringify(me)}\n`);
    });
    server.on('error', () => undefined);
    server.listen({ fd });
    server.unref();
    return { release: () => server.close() };
  }
}

function refusal(netns: string | undefined, holder: HolderInfo | undefined): string {
  const where = netns ? `network namespace ${netns}` : 'this network namespace';
  const who = holder
    ? [holder.pid ? `pid ${holder.pid}` : '', holder.command ? `"${holder.command}"` : '', holder.host && holder.host !== os.hostname() ? `on host ${holder.host}` : '', holder.since ? `since ${holder.since}` : '']
        .filter(Boolean)
        .join(' ')
    : 'a process that does not answer';
  return `another svcplane writer already programs ${where}: ${who || 'unknown process'}. One writer per namespace: ` +
    'stop it first (status and explain only read, and need no lock)';
}

/** Who holds the lock: what it says of itself, else what the kernel and /proc say; 'gone' when nobody does. */
async function describeHolder(netns: string | undefined): Promise<HolderInfo | 'gone' | undefined> {
  const peer = native().connectAbstract(WRITER_LOCK_NAME, netns);
  if (!peer) return 'gone';
  if (peer.fd < 0) return undefined;
  const fromKernel: HolderInfo = peer.pid > 0 ? { pid: peer.pid, command: commandLineOf(peer.pid) } : {};
  const said = await readLine(peer.fd, 2000);
  try {
    const info = said ? (JSON.parse(said) as HolderInfo) : undefined;
    // The kernel's pid is the one valid here (the holder may be in another PID namespace); its own words add the rest.
    return info ? { ...info, ...(fromKernel.pid ? { pid: fromKernel.pid } : {}), command: info.command ?? fromKernel.command } : fromKernel;
  } catch {
    return fromKernel;
  }
}

function commandLineOf(pid: number): string | undefined {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return argv.length ? argv.join(' ') : undefined;
  } catch {
    return undefined;
  }
}

/** The first line the holder writes, or undefined after timeoutMs (a holder busy in a long synchronous step). */
function readLine(fd: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = new net.Socket({ fd, readable: true, writable: false });
    let buf = '';
    const done = (line: string | undefined) => {
      clearTimeout(timer);
      s.destroy();
      resolve(line);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
      else if (buf.length > 4096) done(undefined);
    });
    s.on('end', () => done(buf || undefined));
    s.on('error', () => done(undefined));
  });
}
