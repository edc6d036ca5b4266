// Stale UDP conntrack (issue 5): a DNS-like client keeps one socket, so one conntrack entry, DNATed to one endpoint.
// When that endpoint goes away (its server stopped, its address taken out of the EndpointSlice), svcplane deletes
// exactly the entries pointing at it (a kernel-filtered dump, then deletes: src/dataplane/conntrack.ts), and the
// client's next request goes to a live endpoint instead of into a black hole. `conntrack -L` is the independent reader.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type Sandbox } from '../../scripts/lib/sandbox';
import { runUdpLoop } from '../../scripts/lib/traffic';
import { REPO, svcplaneOk } from '../helpers/cli';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('stale UDP conntrack');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

describe.runIf(haveRoot)('stale UDP conntrack entries are deleted when their endpoint goes away', () => {
  let sb: Sandbox;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-ct-'));
  const sync = (manifests: string) => {
    return JSON.parse(svcplaneOk(['sync', '--once', '--manifests', manifests, '--cluster-cidr', sb.podCIDR.v4, '--output', 'json'], { netns: sb.nodeNs })) as { operations: number; conntrackDeleted?: { 4: number; 6: number } };
  };
  const udpEntries = async () => (await sb.exec(sb.nodeNs, ['conntrack', '-L', '-p', 'udp', '--orig-dst', '198.18.100.10', '--orig-port-dst', '53'])).stdout;

  beforeAll(async () => {
    sb = await createSandbox({ backends: 3, ports: [8080] });
    sync(EXAMPLES);
  });
  afterAll(async () => {
    await sb?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a DNS-like UDP client switches to a live endpoint at once; only the dead endpoint\'s entries go', async () => {
    // A second client on its own socket, to another endpoint's entry: it must survive the clean-up.
    const loop = runUdpLoop(sb, sb.clientNs, { addr: '198.18.100.10', port: 53, loopMs: 6000, intervalMs: 100 });
    await new Promise((r) => setTimeout(r, 1500));
    // Which endpoint the client's entry points at (the reply source), read with conntrack(8).
    const before = await udpEntries();
    const m = /src=(198\.18\.2\.1[123]) dst=\S+ sport=8080/.exec(before);
    expect(m, before).not.toBeNull();
    const dead = m![1];
    const i = sb.backends.findIndex((b) => b.v4 === dead);
    await sb.stopBackend(i);
    fs.writeFileSync(path.join(dir, 'web.yaml'), fs.readFileSync(path.join(EXAMPLES, 'web.yaml'), 'utf8').replace(new RegExp(` {2}- addresses: \\[${dead.replace(/\./g, '\\.')}\\]\\n.*\\n.*\\n`), ''));
    for (const f of ['api.yaml', 'empty.json']) fs.copyFileSync(path.join(EXAMPLES, f), path.join(dir, f));
    const res = sync(dir);
    expect(res.conntrackDeleted?.[4]).toBeGreaterThanOrEqual(1);
    expect(await udpEntries()).not.toContain(`src=${dead} `);
    const r = await loop;
    const name = sb.backends[i].name;
    const last = r.timeline.lastIndexOf(name);
    expect(last).toBeGreaterThan(0);
    const after = r.timeline.slice(last + 1);
    // The requests in flight while the endpoint died and the sync ran may time out; then a live endpoint, for good.
    const firstLive = after.findIndex((x) => x !== 'ETIMEDOUT');
    expect(firstLive, r.timeline.join(' ')).toBeGreaterThanOrEqual(0);
    expect(firstLive, r.timeline.join(' ')).toBeLessThanOrEqual(5);
    const rest = after.slice(firstLive);
    expect(rest.length).toBeGreaterThan(10);
    expect(rest.every((x) => x !== name && x !== 'ETIMEDOUT'), r.timeline.join(' ')).toBe(true);
    await sb.restartBackend(i);
  });
});
