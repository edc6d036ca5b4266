// `npm run demo`: a sandbox of network namespaces (a client, a node, three backend "pods" serving TCP and UDP),
// the example manifests from deploy/examples programmed into the node by the real CLI, real requests to the
// ClusterIP and the NodePort, the status table, how the requests spread, and a clean-up. Needs root.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { createSandbox, installSignalCleanup, type Sandbox } from './lib/sandbox';
import { chiSquareUniform, countsFor, runClient, type ClientResult } from './lib/traffic';

const REPO = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
const SVCPLANE = path.join(REPO, 'bin', 'svcplane.js');
const EXAMPLES = path.join(REPO, 'deploy', 'examples');

function cli(sb: Sandbox, args: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', sb.nodeNs, process.execPath, SVCPLANE, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`svcplane ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trimEnd();
}

function section(title: string): void {
  console.log(`\n== ${title} ${'='.repeat(Math.max(0, 70 - title.length))}`);
}

/** Prints how the answers spread; the chi-square test is over the backends that should get traffic. */
function spread(label: string, r: ClientResult, names: string[], eligible = names): void {
  const counts = countsFor(r, names);
  const total = counts.reduce((a, b) => a + b, 0);
  const bars = names.map((n, i) => `${n} ${String(counts[i]).padStart(4)} ${'#'.repeat(Math.round((40 * counts[i]) / Math.max(1, total)))}`);
  const chi = total > 0 ? chiSquareUniform(countsFor(r, eligible)) : undefined;
  const errs = Object.entries(r.errors).map(([k, v]) => `${k}=${v}`).join(' ');
  console.log(`${label}: ${r.ok} answered${errs ? `, errors: ${errs}` : ''}${chi ? `, chi-square p=${chi.pValue.toFixed(3)}` : ''}`);
  for (const b of bars) console.log(`    ${b}`);
  const sources = Object.keys(r.sources);
  if (sources.length) console.log(`    backends saw the client as: ${sources.join(', ')}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('npm run demo needs root (it creates network namespaces and programs nftables in them)');
    process.exit(1);
  }
  installSignalCleanup();
  section('sandbox');
  const sb = await createSandbox({ backends: 3, ports: [8080] });
  try {
    console.log(`client ${sb.clientIP.v4} / ${sb.clientIP.v6}  ->  node ${sb.nodeIPs.v4} / ${sb.nodeIPs.v6}  ->  pods ${sb.backends.map((b) => b.v4).join(', ')}`);
    console.log(`namespaces: ${[sb.clientNs, sb.nodeNs, ...sb.backendNs].join(' ')}`);

    section('svcplane sync --once (programs deploy/examples into the node namespace)');
    const cidr = `${sb.podCIDR.v4},${sb.podCIDR.v6}`;
    console.log(cli(sb, ['sync', '--once', '--manifests', EXAMPLES, '--cluster-cidr', cidr, '--log-format', 'text']));

    section('svcplane status (read back from the kernel)');
    console.log(cli(sb, ['status']));

    section('real requests from the client namespace');
    const names = sb.backends.map((b) => b.name);
    spread('TCP  ClusterIP 198.18.100.10:80   x300', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.10', port: 80, count: 300 }), names);
    spread('UDP  ClusterIP 198.18.100.10:53   x300', await runClient(sb, sb.clientNs, { proto: 'udp', addr: '198.18.100.10', port: 53, count: 300 }), names);
    spread(`TCP  NodePort  ${sb.nodeIPs.v4}:30080 x300`, await runClient(sb, sb.clientNs, { proto: 'tcp', addr: sb.nodeIPs.v4, port: 30080, count: 300 }), names);
    spread('TCP  ClusterIP [fd00:100::10]:80  x300', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: 'fd00:100::10', port: 80, count: 300 }), names);
    spread('TCP  ClusterIP 198.18.100.11:8000 x300 (be2 not ready)', await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.11', port: 8000, count: 300 }), names, names.slice(0, 2));
    const refused = await runClient(sb, sb.clientNs, { proto: 'tcp', addr: '198.18.100.12', port: 80, count: 3, timeoutMs: 3000 });
    console.log(`TCP  ClusterIP 198.18.100.12:80 (no endpoints): ${JSON.stringify(refused.errors)} after ${refused.elapsedMs.toFixed(0)} ms in all`);

    section('svcplane cleanup');
    console.log(cli(sb, ['cleanup']));
  } finally {
    await sb.destroy();
  }
  console.log('\nsandbox removed; demo done.');
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
