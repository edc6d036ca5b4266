// deploy/kubernetes/daemonset.yaml grants svcplane CAP_NET_ADMIN and nothing else. This proves it is enough: the
// real CLI, run as an unprivileged user (nobody) holding only CAP_NET_ADMIN (setpriv, ambient), programs, reads back
// and cleans up a namespace; without it, it fails with a message that says what is missing.
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, SVCPLANE } from '../helpers/cli';
import { makeNetns, requireRoot } from '../helpers/root';

const haveRoot = requireRoot('capabilities');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

function asNobody(ns: string, caps: string[], args: string[]) {
  const capList = ['-all', ...caps.map((c) => `+${c}`)].join(',');
  const r = spawnSync('ip', ['netns', 'exec', ns, 'setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups',
    `--inh-caps=${capList}`, ...(caps.length ? [`--ambient-caps=${capList}`] : []), `--bounding-set=${capList}`, '--',
    process.execPath, SVCPLANE, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.runIf(haveRoot)('svcplane needs CAP_NET_ADMIN and nothing else', () => {
  let ns: ReturnType<typeof makeNetns>;
  beforeAll(() => {
    ns = makeNetns('cap');
  });
  afterAll(() => ns?.remove());

  it('programs, reads back and cleans up as nobody with only CAP_NET_ADMIN', () => {
    const sync = asNobody(ns.name, ['net_admin'], ['sync', '--once', '--manifests', EXAMPLES, '--output', 'json']);
    expect(sync.stderr).toBe('');
    expect(sync.code).toBe(0);
    expect((JSON.parse(sync.stdout) as { servicePorts: number }).servicePorts).toBe(4);
    const tables = execFileSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'tables'], { encoding: 'utf8' });
    expect(tables).toContain('table ip svcplane');
    const status = asNobody(ns.name, ['net_admin'], ['status', '--output', 'json']);
    expect(status.code).toBe(0);
    expect((JSON.parse(status.stdout) as { rows: unknown[] }).rows.length).toBeGreaterThan(0);
    expect(asNobody(ns.name, ['net_admin'], ['cleanup']).code).toBe(0);
    expect(execFileSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'tables'], { encoding: 'utf8' })).not.toContain('svcplane');
  });

  it('without it, refuses with a message naming the capability', () => {
    const r = asNobody(ns.name, [], ['sync', '--once', '--manifests', EXAMPLES]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Operation not permitted');
    expect(r.stderr).toContain('CAP_NET_ADMIN');
  });
});
