// `svcplane diff --mode ipvs` (sync --once --dry-run) in the guest, on a kernel with IPVS: what a sync would change
// per Service port (virtual services, real servers, svcplane0 bindings, the filter table's elements), and nothing
// applied: no virtual service, no link, no table, before the first sync; IPVS unchanged after a plan.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { svcplane } from '../../helpers/cli';
import { webManifest } from '../../helpers/web-manifest';
import { makeNetns } from '../../helpers/root';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';
const run = promisify(execFile);

const WEB = (endpoints: string[]) => webManifest('198.18.100.50', endpoints);

describe.runIf(inGuest)('svcplane diff --mode ipvs (guest kernel)', () => {
  let ns: ReturnType<typeof makeNetns>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-ipvs-dry-'));
  const inNs = async (argv: string[]) => (await run('ip', ['netns', 'exec', ns.name, ...argv])).stdout;
  const diff = async () => {
    const r = await svcplane(['diff', '--mode', 'ipvs', '--manifests', dir, '--output', 'json'], { netns: ns.name });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };
  beforeAll(() => {
    ns = makeNetns('ipvsdry');
  });
  afterAll(async () => {
    if (ns) await svcplane(['cleanup', '--mode', 'ipvs'], { netns: ns.name });
    ns?.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('plans per Service port and applies nothing; after a sync, an endpoint moved is one real server added and one drained', async () => {
    fs.writeFileSync(path.join(dir, 'web.yaml'), WEB(['198.18.2.11', '198.18.2.12']));
    const first = await diff();
    expect(first.services['t/web:http'].add).toMatchObject({ 'ipvs virtual service': 1, 'ipvs real server': 2, 'svcplane0 binding': 1, 'service-ips': 1 });
    expect(first.table).toContain('create dummy link svcplane0');
    // Nothing applied: no virtual service, no link, no table.
    expect(await inNs(['ipvsadm', '-Ln'])).not.toContain('198.18.100.50');
    expect(await inNs(['ip', '-o', 'link'])).not.toContain('svcplane0');
    expect(await inNs(['nft', 'list', 'tables'])).not.toContain('svcplane');

    expect((await svcplane(['sync', '--once', '--mode', 'ipvs', '--manifests', dir], { netns: ns.name })).code).toBe(0);
    expect((await diff()).operations).toBe(0);
    const programmed = await inNs(['ipvsadm', '-Ln']);
    fs.writeFileSync(path.join(dir, 'web.yaml'), WEB(['198.18.2.11', '198.18.2.13']));
    const moved = await diff();
    // (Its hairpin pair too: a pod reaching itself through the Service is masqueraded. The old pair is deleted,
    // named by no Service: pairs are shared.)
    expect(moved.services['t/web:http']).toEqual({ add: { 'ipvs real server': 1, 'hairpin-endpoints': 1 }, delete: { 'ipvs real server (drained)': 1 } });
    expect(moved.services['(shared or unnamed)']).toEqual({ add: {}, delete: { 'hairpin-endpoints': 1 } });
    expect(await inNs(['ipvsadm', '-Ln'])).toBe(programmed);
  });
});
