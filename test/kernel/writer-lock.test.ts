// One svcplane writer per network namespace: a second writer refuses, naming the first (pid,
// command); readers (status) are not refused; the lock dies with its holder, SIGKILL included; namespaces are
// locked separately. The holder here is svcplane's own lock code in a child process (what `run` holds for its
// lifetime), so the test does not need an API server.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO, svcplane } from '../helpers/cli';
import { makeNetns, requireRoot } from '../helpers/root';
import { endpointSlice } from '../helpers/web-manifest';

const haveRoot = requireRoot('writer lock');
const LOCK_MODULE = path.join(REPO, 'dist', 'src', 'dataplane', 'writerLock.js');

const MANIFEST = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: lock }
spec:
  clusterIP: 198.18.100.90
  ports: [{ name: http, port: 80, targetPort: 8080 }]
---
${endpointSlice('web', 'lock', ['198.18.2.11'])}`;

/** A process holding the writer lock of `netns` until killed; resolves once it holds it. */
async function startHolder(netns: string, command: string): Promise<ChildProcess> {
  const script = `require(${JSON.stringify(LOCK_MODULE)}).acquireWriterLock({ netns: ${JSON.stringify(netns)}, command: ${JSON.stringify(command)} })
    .then(() => { console.log('locked'); setInterval(() => undefined, 1 << 30); }, (e) => { console.log('refused: ' + e.message); process.exit(3); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise<string>((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.on('exit', () => resolve(out.trim() || 'exited'));
  });
  if (first !== 'locked') throw new Error(`lock holder did not start: ${first}`);
  return child;
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

describe.runIf(haveRoot)('writer lock: one svcplane writer per network namespace', () => {
  let ns: ReturnType<typeof makeNetns>;
  let other: ReturnType<typeof makeNetns>;
  let dir: string;
  const holders: ChildProcess[] = [];
  beforeAll(() => {
    ns = makeNetns('lock');
    other = makeNetns('lock2');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-lock-'));
    fs.writeFileSync(path.join(dir, 'web.yaml'), MANIFEST);
    fs.writeFileSync(path.join(dir, 'kubeconfig'), `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "http://127.0.0.1:9" } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: c, context: { cluster: c, user: u } }]
current-context: c
`);
  });
  afterEach(async () => {
    for (const h of holders.splice(0)) await killed(h);
  });
  afterAll(() => {
    ns?.remove();
    other?.remove();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a second writer refuses, naming the holder; readers still run; the lock dies with its holder (SIGKILL)', async () => {
    const holder = await startHolder(ns.path, 'svcplane run --hostname-override node-a');
    holders.push(holder);
    const sync = await svcplane(['sync', '--once', '--manifests', dir, '--netns', ns.path]);
    expect(sync.code).toBe(1);
    expect(sync.stderr).toContain(`another svcplane writer already programs network namespace ${ns.path}: pid ${holder.pid} "svcplane run --hostname-override node-a"`);
    const cleanup = await svcplane(['cleanup', '--netns', ns.path]);
    expect(cleanup.code).toBe(1);
    expect(cleanup.stderr).toContain(`pid ${holder.pid}`);
    // The agent takes it too, once it has its configuration (a bad kubeconfig is still an input error first).
    const run = await svcplane(['run', '--kubeconfig', path.join(dir, 'kubeconfig'), '--netns', ns.path, '--healthz-bind-address', '', '--metrics-bind-address', '']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`pid ${holder.pid}`);
    // Readers take no lock.
    expect((await svcplane(['status', '--netns', ns.path])).code).toBe(0);
    // Another namespace has its own lock.
    expect((await svcplane(['sync', '--once', '--manifests', dir, '--netns', other.path])).code).toBe(0);

    await killed(holder);
    const after = await svcplane(['sync', '--once', '--manifests', dir, '--netns', ns.path]);
    expect(after.stderr).toBe('');
    expect(after.code).toBe(0);
    // A writer that finished released it: the next one runs.
    expect((await svcplane(['cleanup', '--netns', ns.path])).code).toBe(0);
  });

  it('a writer holds the lock while it runs: a second one started meanwhile is refused', async () => {
    const first = await startHolder(ns.path, 'first');
    holders.push(first);
    const second = spawn(process.execPath, ['-e', `require(${JSON.stringify(LOCK_MODULE)}).acquireWriterLock({ netns: ${JSON.stringify(ns.path)} })
      .then(() => console.log('locked'), (e) => console.log(e.name + ': ' + e.message))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const said = await new Promise<string>((resolve) => {
      let out = '';
      second.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      second.on('exit', () => resolve(out.trim()));
    });
    expect(said).toMatch(new RegExp(`^WriterLockError: another svcplane writer already programs network namespace ${ns.path}: pid ${first.pid} "first" since `));
  });
});
