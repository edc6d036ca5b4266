// The agent before its first sync, where it used to hang or die by the signal: waiting for this Node's addresses
// (bounded, said in the log), and SIGTERM while the API server is unreachable (a clean stop, exit 0). Nothing here
// programs a kernel: the agent never gets past waiting.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent';
import { resolveAgentConfig } from '../../src/config/kubeProxyConfig';
import { openTransport } from '../../src/k8s/transport';
import type { Logger } from '../../src/log';
import { ApiServerDouble } from '../apiserver/double';
import { SVCPLANE } from '../helpers/cli';
import { makeNetns, requireRoot } from '../helpers/root';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-agent-start-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function recordingLogger(): Logger & { lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
  return { lines, debug: at('debug'), detail: at('detail'), info: at('info'), warn: at('warn'), error: at('error') };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('the agent before its first sync', () => {
  it('waits for this Node\'s addresses (nodePortAddresses: primary) within a bound, saying why, then fails', async () => {
    const api = new ApiServerDouble();
    await api.start();
    try {
      fs.writeFileSync(path.join(dir, 'kubeconfig'), api.kubeconfig());
      const log = recordingLogger();
      const config = resolveAgentConfig({ nodePortAddresses: ['primary'], healthzBindAddress: '', metricsBindAddress: '' });
      const agent = new Agent({ config, nodeName: 'nowhere', api: await openTransport(path.join(dir, 'kubeconfig')), log, nodeAddressWaitMs: 1500 });
      const err = await agent.start().then(() => undefined, (e: Error) => e);
      await agent.stop();
      expect(err?.message).toBe('nodePortAddresses "primary": this Node is not in the API (or the API server is not reachable) after 2 s (node nowhere); exiting so the kubelet restarts svcplane');
    } finally {
      await api.stop();
    }
  });

  it('SIGTERM while the API server is unreachable: a clean stop and exit 0, not death by the signal', async () => {
    fs.writeFileSync(path.join(dir, 'unreachable'), [
      'apiVersion: v1', 'kind: Config', 'current-context: x', 'clusters:', '- name: x', '  cluster:', `    server: http://127.0.0.1:${await freePort()}`,
      'contexts:', '- name: x', '  context:', '    cluster: x', '    user: u', 'users:', '- name: u', '  user:', '    token: t', '',
    ].join('\n'));
    const healthz = `127.0.0.1:${await freePort()}`;
    const child = spawn(process.execPath, [SVCPLANE, 'run', '--kubeconfig', path.join(dir, 'unreachable'), '--healthz-bind-address', healthz, '--metrics-bind-address', `127.0.0.1:${await freePort()}`, '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    // Once a watch has failed, the agent is waiting in its backoff: that is when SIGTERM used to kill it.
    const end = Date.now() + 60_000;
    while (!output.includes('cannot list from the API server; retrying')) {
      if (Date.now() > end) throw new Error(`the agent never reported a failed watch:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(output).toContain('"msg":"stopping: the dataplane stays programmed","signal":"SIGTERM"');
  }, 90_000);

  it.runIf(requireRoot('the agent against a vanished API server'))('/healthz says 503 with the reason while its watches fail (at once before anything was listed; later, after healthTimeout), /livez 200, and 200 when they recover', async () => {
    const api = new ApiServerDouble();
    await api.start();
    const ns = makeNetns('blind');
    const port = await freePort();
    fs.writeFileSync(path.join(dir, 'blind-kubeconfig'), api.kubeconfig());
    const agent = new Agent({
      config: resolveAgentConfig({ mode: 'nftables', nftables: { syncPeriod: '1s', minSyncPeriod: '0s' }, healthzBindAddress: `127.0.0.1:${port}`, metricsBindAddress: '' }),
      nodeName: 'n1', api: await openTransport(path.join(dir, 'blind-kubeconfig')), log: recordingLogger(), netns: ns.path, backoff: { initialMs: 100, maxMs: 400 },
    });
    const get = async (p: string) => {
      const r = await fetch(`http://127.0.0.1:${port}${p}`);
      return { code: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    try {
      await api.pause();
      const starting = agent.start();
      // Blind from the start: healthTimeout is 2 x syncPeriod = 2 s. (/healthz is 503 at once anyway, the Node
      // not being known: the reason is what says the watches are failing.)
      const end = Date.now() + 60_000;
      let h = await get('/healthz').catch(() => undefined);
      while (h?.code !== 503 || h.body.reason === undefined) {
        if (Date.now() > end) throw new Error(`/healthz never said 503: ${JSON.stringify(h)}`);
        await new Promise((r) => setTimeout(r, 100));
        h = await get('/healthz').catch(() => undefined);
      }
      expect(String(h.body.reason)).toMatch(/^nodes watch failing for \d+ s \(nothing listed yet\): .*ECONNREFUSED/);
      expect((await get('/livez')).code).toBe(200);
      // The server is back: the watch recovers, and so does /healthz (the Node is there).
      api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
      await api.resume();
      await starting;
      while ((await get('/healthz')).code !== 200) {
        if (Date.now() > end) throw new Error(`/healthz never recovered: ${JSON.stringify(await get('/healthz'))}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await agent.stop();
      await api.stop();
      ns.remove();
    }
  }, 120_000);
});
