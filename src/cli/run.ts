// `svcplane run`: the node agent, with kube-proxy's configuration file and flags. Its own module, loaded only by
// this command (src/cli/main.ts): the agent brings prom-client, the API client and the YAML parser.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { stringify as stringifyYAML } from 'yaml';
import { Agent } from '../agent';
import { ConfigError, decodeKubeProxyConfiguration, kubeProxyDifferences, resolveAgentConfig, toKubeProxyConfiguration } from '../config/kubeProxyConfig';
import type { Dataplane } from '../dataplane/types';
import { acquireWriterLock } from '../dataplane/writerLock';
import { KubeConfigError } from '../k8s/kubeconfig';
import { openTransport } from '../k8s/transport';
import { createLogger } from '../log';
import { type ParsedFlags, UsageError, bool, list, noEffectFlags, str } from './args';
import { KUBE_PROXY_FLAGS } from './runFlags';


/** klog's -v (src/log.ts: 0 starts, failures, changes; 2 every sync; 4+ watch and transaction detail). */
function verbosity(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`-v: "${v}" is not a verbosity level (0, 1, 2...)`);
  return Number(v);
}

/** A bad configuration file or kubeconfig is an input error (exit 2), like a bad flag. */
export async function cmdRun(flags: ParsedFlags, openDataplane: (flags: ParsedFlags) => Dataplane): Promise<number> {
  try {
    return await runAgent(flags, openDataplane);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof KubeConfigError) throw new UsageError(e.message);
    throw e;
  }
}

async function runAgent(flags: ParsedFlags, openDataplane: (flags: ParsedFlags) => Dataplane): Promise<number> {
  let file: Record<string, unknown> | undefined;
  const warnings: string[] = [];
  const configPath = str(flags, 'config');
  if (configPath) {
    const text = await fs.promises.readFile(configPath, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new UsageError(`--config: cannot read ${configPath}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    const loaded = decodeKubeProxyConfiguration(text, configPath);
    file = loaded.doc;
    warnings.push(...loaded.warnings.map((w) => `${configPath}: ${w}`));
  }
  const cfg = resolveAgentConfig(file, {
    proxyMode: str(flags, 'proxy-mode'), hostnameOverride: str(flags, 'hostname-override'),
    clusterCIDR: flags['cluster-cidr'] === undefined ? undefined : list(flags, 'cluster-cidr'),
    serviceCIDR: list(flags, 'service-cidr'), bindAddress: str(flags, 'bind-address'),
    nodePortAddresses: flags['nodeport-addresses'] === undefined ? undefined : list(flags, 'nodeport-addresses'),
    masqueradeAll: flags['masquerade-all'] === undefined ? undefined : bool(flags, 'masquerade-all'),
    ipvsScheduler: str(flags, 'ipvs-scheduler'), ipvsBindMode: str(flags, 'ipvs-bind-mode'), cgroupRoot: str(flags, 'cgroup-root'), bpfRoot: str(flags, 'bpf-root'), healthzBindAddress: str(flags, 'healthz-bind-address'), metricsBindAddress: str(flags, 'metrics-bind-address'),
    iptablesSyncPeriod: str(flags, 'iptables-sync-period'), iptablesMinSyncPeriod: str(flags, 'iptables-min-sync-period'),
    ipvsSyncPeriod: str(flags, 'ipvs-sync-period'), ipvsMinSyncPeriod: str(flags, 'ipvs-min-sync-period'),
    configSyncPeriod: str(flags, 'config-sync-period'), kubeconfig: str(flags, 'kubeconfig'),
    healthzPort: str(flags, 'healthz-port'), metricsPort: str(flags, 'metrics-port'), detectLocalMode: str(flags, 'detect-local-mode'),
    podBridgeInterface: str(flags, 'pod-bridge-interface'), podInterfaceNamePrefix: str(flags, 'pod-interface-name-prefix'),
  });
  const format = (str(flags, 'log-format') ?? str(flags, 'logging-format')) as 'json' | 'text' | undefined;
  const log = createLogger({ format: format ?? cfg.logFormat, verbosity: verbosity(str(flags, 'v')) ?? cfg.logVerbosity ?? 0 });
  for (const w of warnings) log.warn(w);
  for (const note of noEffectFlags(flags, KUBE_PROXY_FLAGS)) log.info(note);
  for (const note of kubeProxyDifferences(file, str(flags, 'proxy-mode'))) log.info(note);

  if (bool(flags, 'init-only')) {
    // kube-proxy's --init-only does the privileged set-up (sysctls) in an init container and exits; svcplane has
    // no such step apart from starting. Exiting (after the configuration checked out) keeps such a Pod working.
    log.info('--init-only: the configuration is valid; svcplane needs no separate set-up step; exiting');
    return 0;
  }
  const writeTo = str(flags, 'write-config-to');
  if (writeTo) {
    await fs.promises.writeFile(writeTo, stringifyYAML(toKubeProxyConfiguration(cfg)));
    log.info('wrote the effective configuration', { file: writeTo });
    return 0;
  }
  const netns = str(flags, 'netns');
  if (bool(flags, 'cleanup')) {
    const lock = await acquireWriterLock({ netns });
    const dp = openDataplane({ ...flags, mode: cfg.mode });
    try {
      log.info(await dp.cleanup() ? 'removed svcplane\'s tables' : 'nothing to remove', { mode: dp.mode });
      return 0;
    } finally {
      dp.close();
      lock.release();
    }
  }
  const nodeName = cfg.hostnameOverride || os.hostname().toLowerCase();
  const api = await openTransport(cfg.kubeconfig || undefined, undefined, str(flags, 'master'));
  // Held until the process ends: one writer per namespace (src/dataplane/writerLock.ts).
  await acquireWriterLock({ netns });
  const agent = new Agent({ config: cfg, nodeName, api, log, netns });
  // SIGTERM/SIGINT, whenever they come (also while the API server is unreachable and start() still waits for the
  // first lists): stop watching, leave the dataplane programmed (connections keep flowing), exit 0.
  const stopSignal = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const started = agent.start().then(() => undefined);
  let signal: string | undefined;
  try {
    signal = await Promise.race([started, stopSignal]);
  } catch (e) {
    // e.g. a kernel this mode cannot run on: stop watching and serving, so the process can exit with the reason.
    await agent.stop();
    throw e;
  }
  signal ??= await stopSignal;
  log.info('stopping: the dataplane stays programmed', { signal });
  await agent.stop();
  // start() gives up once stopped; a failure it reports after that changes nothing.
  await started.catch(() => undefined);
  return 0;
}
