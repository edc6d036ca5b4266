// One group of scenarios (test/helpers/explain-scenarios.ts) programmed with one `sync --once`, then every flow of
// it explained against one reading of the kernel and tried with real connections from where its client is: the
// client namespace (outside the cluster), a pod's namespace, and the node itself. Each flow starts with a few
// exchanges; a flow answered by fewer endpoints than it may reach gets more, so an endpoint explain lists but the
// kernel never picks (or the reverse) shows. See flow-verdicts.ts for what counts as agreeing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Sandbox } from '../../scripts/lib/sandbox';
import { type FlowResult, type FlowSpec, runFlows } from '../../scripts/lib/traffic';
import type { Explanation, FlowQuery } from '../../src/dataplane/explain';
import { svcplane } from './cli';
import { type ScenarioGroup, type ScenarioSpec, type Target, scenarioManifest, syncFlags, targetsOf } from './explain-scenarios';
import { type FlowContext, type Observed, describeObserved, disagreement, observe } from './flow-verdicts';

export const NODE_DAEMON = 'node';
/** Per exchange: long enough for a loaded 2-core machine, short enough that drops cost little. */
const EXCHANGE_TIMEOUT_MS = 2500;
const FIRST_ROUND = 4;
/** With 2 endpoints at 1/2 each, 4 + 12 exchanges miss one with probability 2 x 2^-16. */
const SECOND_ROUND = 12;

export type SourceKind = 'client' | 'pod' | 'node';

export interface FlowCase {
  scenario: ScenarioSpec;
  target: Target;
  source: SourceKind;
  /** The namespace the client runs in, and its address as the node sees it (explain's --from). */
  ns: string;
  from: string;
}

export interface Compared {
  flow: FlowCase;
  explanation: Explanation;
  observed: Observed;
  /** Undefined when explain and the connections agree. */
  disagreement?: string;
  /** A first try that disagreed and a second that agreed: what the first saw (reported, not counted). */
  retried?: string;
}

/** The source address the node picks for each destination (`ip route get`), for flows the node itself starts. */
async function nodeSources(sb: Sandbox, destinations: string[]): Promise<Map<string, string>> {
  const unique = [...new Set(destinations)];
  const r = await sb.exec(sb.nodeNs, ['ip', '-j', '-batch', '-'], { input: unique.map((d) => `route get ${d}\n`).join('') });
  if (r.code !== 0) throw new Error(`ip route get: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return new Map(unique.map((d, i) => [d, (JSON.parse(lines[i]) as Array<{ prefsrc: string }>)[0].prefsrc]));
}

export async function flowCases(sb: Sandbox, group: ScenarioGroup): Promise<FlowCase[]> {
  const targets = group.scenarios.flatMap((scenario) => targetsOf(sb, scenario).map((target) => ({ scenario, target })));
  const srcOf = await nodeSources(sb, targets.map((t) => t.target.addr));
  return targets.flatMap(({ scenario, target }) => [
    { scenario, target, source: 'client' as const, ns: sb.clientNs, from: sb.clientIP.v4 },
    { scenario, target, source: 'pod' as const, ns: sb.backends[scenario.podClient].ns, from: sb.backends[scenario.podClient].v4 },
    { scenario, target, source: 'node' as const, ns: sb.nodeNs, from: srcOf.get(target.addr)! },
  ]);
}

/** What flow-verdicts.ts needs to know about where a flow comes from and goes to in the sandbox. */
export function flowContext(sb: Sandbox, f: FlowCase): FlowContext {
  return {
    from: f.from, backendNames: new Map(sb.backends.map((b) => [b.v4, b.name])), nodeDaemon: NODE_DAEMON,
    toNodeAddress: f.target.addr === sb.nodeIPs.v4 || f.target.addr === sb.podGateway.v4,
    clientName: sb.backends.find((b) => b.ns === f.ns)?.name, masqueradeSource: sb.podGateway.v4, localSender: f.source === 'node',
  };
}

/** Programs a group's Services (one sync, replacing the previous group's); throws with the CLI's stderr if refused. */
export async function programGroup(sb: Sandbox, group: ScenarioGroup): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcplane-agree-'));
  try {
    fs.writeFileSync(path.join(dir, 'scenarios.yaml'), group.scenarios.map((s) => scenarioManifest(sb, s)).join('---\n'));
    const r = await svcplane(['sync', '--once', '--manifests', dir, ...syncFlags(sb, group.flags), '--output', 'json'], { netns: sb.nodeNs });
    if (r.code !== 0) throw new Error(`sync --once failed (${r.code}): ${r.stderr}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs each flow's exchanges from its own namespace (one client process per namespace, all at once). */
async function exchange(sb: Sandbox, flows: FlowCase[], count: (i: number) => number): Promise<Map<number, FlowResult>> {
  const byNs = new Map<string, number[]>();
  flows.forEach((f, i) => {
    if (count(i) > 0) byNs.set(f.ns, [...(byNs.get(f.ns) ?? []), i]);
  });
  const out = new Map<number, FlowResult>();
  await Promise.all([...byNs].map(async ([ns, idx]) => {
    const specs: FlowSpec[] = idx.map((i) => ({ proto: flows[i].target.proto === 'TCP' ? 'tcp' : 'udp', addr: flows[i].target.addr, port: flows[i].target.port, count: count(i) }));
    const results = await runFlows(sb, ns, specs, { timeoutMs: EXCHANGE_TIMEOUT_MS, concurrency: 24 });
    idx.forEach((i, k) => out.set(i, results[k]));
  }));
  return out;
}

function merge(a: FlowResult, b: FlowResult | undefined): FlowResult {
  if (!b) return a;
  const add = (x: Record<string, number>, y: Record<string, number>) => {
    const r = { ...x };
    for (const [k, v] of Object.entries(y)) r[k] = (r[k] ?? 0) + v;
    return r;
  };
  return { ok: a.ok + b.ok, counts: add(a.counts, b.counts), sources: add(a.sources, b.sources), errors: add(a.errors, b.errors), firstErrorMs: a.firstErrorMs ?? b.firstErrorMs };
}

/**
 * Explains every flow of the programmed group (`explain`: many flows against one reading of the kernel), tries
 * them, and compares.
 */
export async function compareGroup(sb: Sandbox, flows: FlowCase[], explain: (qs: FlowQuery[]) => Promise<Explanation[]>): Promise<Compared[]> {
  const explanations = await explain(flows.map((f) => ({ protocol: f.target.proto, address: f.target.addr, port: f.target.port, from: f.from })));
  const first = await exchange(sb, flows, () => FIRST_ROUND);
  // More exchanges where fewer endpoints answered than the flow may reach (explain's list or the Service's own).
  const needMore = (i: number) => {
    const o = observe(first.get(i)!);
    const may = Math.max(explanations[i].endpoints.length, flows[i].scenario.endpoints.length);
    return o.fate === 'answered' && o.by.length < may ? SECOND_ROUND : 0;
  };
  const second = await exchange(sb, flows, needMore);
  const judge = (i: number, observed: Observed) => disagreement(explanations[i], observed, flowContext(sb, flows[i]));
  const observed = flows.map((_, i) => observe(merge(first.get(i)!, second.get(i))));
  // A difference must show twice: a loaded machine may lose an exchange now and then, the kernel's verdict does not
  // change between two tries.
  const suspects = new Set(flows.flatMap((_, i) => (judge(i, observed[i]) ? [i] : [])));
  const again = await exchange(sb, flows, (i) => (suspects.has(i) ? FIRST_ROUND + SECOND_ROUND : 0));
  return flows.map((flow, i) => {
    const retried = again.get(i);
    const o = retried ? observe(retried) : observed[i];
    const d = retried ? judge(i, o) : undefined;
    return { flow, explanation: explanations[i], observed: o, ...(d ? { disagreement: d } : {}), ...(retried && !d ? { retried: describeObserved(observed[i]) } : {}) };
  });
}

/** One line per flow for reports: scenario, flow, explain's (or `who`'s) answer, what happened, and the difference. */
export function describeCompared(c: Compared, who = 'explain'): string {
  const e = c.explanation;
  const eps = e.endpoints.map((p) => `${p.address}${p.share !== undefined && p.share !== 1 ? ` ${Math.round(p.share * 100)}%` : ''}`).join(', ');
  const f = c.flow;
  return `${f.scenario.name} ${f.target.proto} ${f.target.addr}:${f.target.port} (${f.target.role}) from ${f.source} ${f.from}: ` +
    `${who} ${e.verdict}${eps ? ` [${eps}]` : ''}${e.masquerade !== undefined ? ` masquerade ${e.masquerade}` : ''}; ` +
    `connections ${describeObserved(c.observed)}${c.disagreement ? `: DISAGREE (${c.disagreement})` : ''}`;
}
