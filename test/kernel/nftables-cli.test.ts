// The CLI contract with the real kernel: bad input is skipped and named while the rest is programmed; SCTP is
// programmed (checked at rule level: this kernel has no SCTP sockets); a kernel refusal exits 1 with a clear
// message; --help documents every flag; a dry run (`sync --once --dry-run`, `diff`) says what would change per
// Service port and changes nothing.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SVCPLANE, svcplane } from '../helpers/cli';
import { inNetns, makeNetns, requireRoot } from '../helpers/root';
import { endpointSlice } from '../helpers/web-manifest';

const haveRoot = requireRoot('nftables CLI');

function writeManifests(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-cli-'));
  fs.chmodSync(dir, 0o755);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text, { mode: 0o644 });
  return dir;
}

const GOOD = `
apiVersion: v1
kind: Service
metadata: { name: good, namespace: t }
spec:
  clusterIP: 198.18.100.40
  ports: [{ name: s, protocol: SCTP, port: 9999, targetPort: 9999 }]
---
${endpointSlice('good', 't', ['198.18.2.11'], { name: 's', port: 9999, protocol: 'SCTP' })}`;
const BAD = `
apiVersion: v1
kind: Service
metadata: { name: bad-ip, namespace: t }
spec:
  clusterIP: 198.18.100.999
  ports: [{ port: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: bad-port, namespace: t }
spec:
  clusterIP: 198.18.100.41
  ports: [{ port: 70000 }]
---
this: is: not: yaml
`;

describe.runIf(haveRoot)('svcplane CLI on the real kernel', () => {
  let ns: ReturnType<typeof makeNetns>;
  let dir: string;
  beforeAll(() => {
    ns = makeNetns('cli');
    dir = writeManifests({ 'good.yaml': GOOD, 'bad.yaml': BAD });
  });
  afterAll(() => {
    ns?.remove();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('skips each malformed object with one log line naming it and programs the rest (SCTP included)', async () => {
    const r = await svcplane(['sync', '--once', '--manifests', dir, '--log-format', 'text'], { netns: ns.name });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/Service t\/bad-ip: .*198\.18\.100\.999/);
    expect(r.stderr).toMatch(/Service t\/bad-port: .*70000/);
    expect(r.stderr).toMatch(/bad\.yaml#3/);
    expect(r.stdout).toContain('1 service port(s)');
    const map = inNetns(ns.name, ['nft', 'list', 'map', 'ip', 'svcplane', 'service-ips']);
    expect(map).toContain('198.18.100.40 . sctp . 9999');
    const eps = inNetns(ns.name, ['nft', 'list', 'map', 'ip', 'svcplane', 'service-endpoints']);
    expect(eps).toContain('198.18.2.11 . 9999');
  });

  it('exits 1 with a clear message when the kernel refuses (no CAP_NET_ADMIN)', async () => {
    // Still root (so files stay readable), but with CAP_NET_ADMIN dropped from the bounding set.
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile('ip', ['netns', 'exec', ns.name, 'setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin',
        process.execPath, SVCPLANE, 'sync', '--once', '--manifests', dir], { encoding: 'utf8', timeout: 120_000 }, (err, _stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr });
      });
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/EPERM|Operation not permitted/);
    expect(r.stderr).toContain('CAP_NET_ADMIN');
  });

  it('exits 2 on usage errors and documents every flag in --help', async () => {
    expect((await svcplane(['sync', '--once', '--manifests', dir, '--cluster-cidr', 'nonsense'], { netns: ns.name })).code).toBe(2);
    expect((await svcplane(['sync', '--bogus'])).code).toBe(2);
    expect((await svcplane(['frobnicate'])).code).toBe(2);
    const help = await svcplane(['sync', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--once', '--mode', '--manifests', '--node-name', '--node-ip', '--cluster-cidr', '--nodeport-addresses', '--masquerade-all', '--output'])
      expect(help.stdout).toContain(flag);
    expect((await svcplane(['--help'])).stdout).toMatch(/sync[\s\S]*status[\s\S]*cleanup/);
    expect((await svcplane(['status', '--help'])).stdout).toContain('--output');
  });

  it('sync --once --dry-run and diff: what would change, per Service port, and nothing applied', async () => {
    const fresh = makeNetns('dry');
    const d = writeManifests({ 'good.yaml': GOOD });
    const ruleset = () => inNetns(fresh.name, ['nft', 'list', 'ruleset']);
    try {
      const before = ruleset();
      const first = await svcplane(['sync', '--once', '--dry-run', '--manifests', d, '--output', 'json'], { netns: fresh.name });
      expect(first.code).toBe(0);
      const plan = JSON.parse(first.stdout);
      expect(plan).toMatchObject({ dryRun: true, mode: 'nftables', servicePorts: 1 });
      expect(plan.services['t/good:s'].add).toMatchObject({ 'service-ips': 1, 'service-endpoints': 1, 'cluster-ips': 1 });
      expect(plan.table).toContain('add table svcplane');
      expect(plan.operations).toBeGreaterThan(0);
      expect(ruleset()).toBe(before); // nothing applied
      // Programmed, then the same manifests: nothing would change.
      expect((await svcplane(['sync', '--once', '--manifests', d], { netns: fresh.name })).code).toBe(0);
      const same = await svcplane(['diff', '--manifests', d], { netns: fresh.name });
      expect(same.stdout).toContain('nothing would change; nothing applied');
      // An endpoint moved: only that Service port, its slot rewritten; the kernel keeps what it had.
      const programmed = ruleset();
      fs.writeFileSync(path.join(d, 'good.yaml'), GOOD.replace('198.18.2.11', '198.18.2.12'));
      const moved = JSON.parse((await svcplane(['diff', '--manifests', d, '--output', 'json'], { netns: fresh.name })).stdout);
      expect(Object.keys(moved.services).filter((k) => !k.startsWith('('))).toEqual(['t/good:s']);
      expect(moved.services['t/good:s'].add).toEqual({ 'service-endpoints': 1, 'hairpin-endpoints': 1 });
      expect(moved.table).toEqual([]);
      expect(ruleset()).toBe(programmed);
      // A Service gone: its elements are named by what the kernel holds.
      fs.writeFileSync(path.join(d, 'good.yaml'), '');
      const gone = JSON.parse((await svcplane(['diff', '--manifests', d, '--output', 'json'], { netns: fresh.name })).stdout);
      expect(gone.services['t/good:s'].delete).toMatchObject({ 'service-ips': 1, 'service-endpoints': 1 });
    } finally {
      fresh.remove();
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
