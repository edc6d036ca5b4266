// Where the API server is and how to authenticate: a kubeconfig file (--kubeconfig / clientConnection.kubeconfig,
// else $KUBECONFIG, else ~/.kube/config) or the in-cluster service account, in that order.
//
// Why not @kubernetes/client-node's KubeConfig for everything: loading it costs ~67 MB of RSS (its config module
// pulls in the whole generated API), measured on this machine, which is 45% of the agent's 150 MB budget at 30k
// Services. So svcplane reads the common cases itself: what a DaemonSet uses (in-cluster token + CA), and
// kubeconfigs with tokens, token files, basic auth or client certificates. A kubeconfig whose user needs an exec
// plugin or an auth provider (EKS, GKE, OIDC...) is handed to client-node, loaded only then (transport.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseYAML } from 'yaml';

export const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ClusterAccess {
  /** Base URL, no trailing slash. */
  server: string;
  /** Where this came from, for logs. */
  source: string;
  ca?: Buffer;
  insecureSkipTLSVerify: boolean;
  tlsServerName?: string;
  cert?: Buffer;
  key?: Buffer;
  /** Bearer token, read fresh each call when it comes from a file (projected tokens rotate). */
  token?: () => string | undefined;
  basic?: { username: string; password: string };
}

/** The kubeconfig needs client-node (exec plugin or auth provider); `file` is the kubeconfig to give it. */
export interface NeedsClientNode {
  needsClientNode: true;
  file?: string;
  reason: string;
  /** --master's address, replacing the kubeconfig's. */
  server?: string;
}

export class KubeConfigError extends Error {}

type Named<T> = Array<{ name?: string } & T>;
interface RawConfig {
  'current-context'?: string;
  clusters?: Named<{ cluster?: Record<string, unknown> }>;
  users?: Named<{ user?: Record<string, unknown> }>;
  contexts?: Named<{ context?: { cluster?: string; user?: string } }>;
}

/** Resolves access from an explicit file, else the default locations, else in-cluster config. */
export function loadClusterAccess(explicitFile?: string, env: NodeJS.ProcessEnv = process.env): ClusterAccess | NeedsClientNode {
  if (explicitFile) return fromFiles([explicitFile]);
  const fromEnv = (env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean);
  if (fromEnv.length) return fromFiles(fromEnv);
  const home = path.join(env.HOME ?? os.homedir(), '.kube', 'config');
  if (fs.existsSync(home)) return fromFiles([home]);
  if (env.KUBERNETES_SERVICE_HOST && fs.existsSync(path.join(SA_DIR, 'token'))) return inCluster(env);
  throw new KubeConfigError('no kubeconfig: give --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a cluster (service account)');
}

/**
 * The API server address given with --master (kube-proxy's flag: "overrides any value in kubeconfig"): the server
 * of whatever access was found, kept with its credentials, so a DaemonSet can use its service account against the
 * API server's real address. With no credentials anywhere it is the address alone, as kube-proxy's
 * BuildConfigFromFlags makes it. A bare host:port gets https://, as client-go's DefaultServerURL gives it.
 */
export function withMaster(master: string, load: () => ClusterAccess | NeedsClientNode): ClusterAccess | NeedsClientNode {
  const server = (/^[a-z]+:\/\//i.test(master) ? master : `https://${master}`).replace(/\/+$/, '');
  try {
    new URL(server);
  } catch {
    throw new KubeConfigError(`--master: "${master}" is not a URL (e.g. https://10.0.0.1:6443)`);
  }
  let access: ClusterAccess | NeedsClientNode;
  try {
    access = load();
  } catch (e) {
    if (!(e instanceof KubeConfigError) || !/^no kubeconfig/.test(e.message)) throw e;
    return { server, source: '--master (no credentials)', insecureSkipTLSVerify: false };
  }
  if ('needsClientNode' in access) return { ...access, server };
  return { ...access, server, source: `${access.source}, server from --master` };
}

/**
 * Why the agent may never reach `server`, when that is the `kubernetes` Service's ClusterIP as kubelet's service
 * environment gives it (KUBERNETES_PORT=tcp://<ClusterIP>:<port>, set in every pod, hostNetwork ones too): with
 * kube-proxy gone, nothing routes that address until svcplane has synced, and svcplane cannot sync without the
 * API server. Undefined for any other address.
 */
export function clusterIPHint(server: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:]+):\d+$/.exec(env.KUBERNETES_PORT ?? '');
  if (!m) return undefined;
  let host: string;
  try {
    host = new URL(server).hostname;
  } catch {
    return undefined;
  }
  if (host.replace(/^\[|\]$/g, '') !== m[1].replace(/^\[|\]$/g, '')) return undefined;
  return `${host} is the "kubernetes" Service's ClusterIP (kubelet's service environment); without kube-proxy nothing ` +
    'routes it until svcplane has synced, and svcplane needs the API server to sync. Give the API server\'s real ' +
    'address: k8sServiceHost and k8sServicePort in the svcplane ConfigMap (deploy/kubernetes), --master, or a ' +
    'kubeconfig (kubeadm\'s kube-proxy ConfigMap carries one: kubeconfig.conf)';
}

/** rest.InClusterConfig: KUBERNETES_SERVICE_HOST/PORT, the service account's token (re-read: it rotates) and CA. */
export function inCluster(env: NodeJS.ProcessEnv = process.env, dir = SA_DIR): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new KubeConfigError('in-cluster config: KUBERNETES_SERVICE_HOST is not set');
  const tokenFile = path.join(dir, 'token');
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    source: 'in-cluster service account',
    ca: readOptional(path.join(dir, 'ca.crt')),
    insecureSkipTLSVerify: false,
    token: () => fs.readFileSync(tokenFile, 'utf8').trim(),
  };
}

/** Several files merge as kubectl merges them: the first file to set a name (or current-context) wins. */
function fromFiles(files: string[]): ClusterAccess | NeedsClientNode {
  const merged: Required<RawConfig> = { 'current-context': '', clusters: [], users: [], contexts: [] };
  const dirOf = new Map<object, string>();
  for (const file of files) {
    let raw: RawConfig;
    try {
      raw = (parseYAML(fs.readFileSync(file, 'utf8')) ?? {}) as RawConfig;
    } catch (e) {
      throw new KubeConfigError(`kubeconfig ${file}: ${(e as Error).message.split('\n')[0]}`);
    }
    if (!merged['current-context'] && raw['current-context']) merged['current-context'] = raw['current-context'];
    for (const k of ['clusters', 'users', 'contexts'] as const) {
      for (const item of (raw[k] ?? []) as Array<{ name?: string }>) {
        if ((merged[k] as Array<{ name?: string }>).some((x) => x.name === item.name)) continue;
        (merged[k] as Array<{ name?: string }>).push(item);
        dirOf.set(item, path.dirname(path.resolve(file)));
      }
    }
  }
  const where = files.join(path.delimiter);
  const ctxName = merged['current-context'];
  const ctx = merged.contexts.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw new KubeConfigError(`kubeconfig ${where}: current-context ${JSON.stringify(ctxName)} is not defined`);
  const clusterItem = merged.clusters.find((c) => c.name === ctx.cluster);
  const cluster = clusterItem?.cluster;
  if (!cluster || typeof cluster.server !== 'string') throw new KubeConfigError(`kubeconfig ${where}: cluster ${JSON.stringify(ctx.cluster)} has no server`);
  const userItem = merged.users.find((u) => u.name === ctx.user);
  const user = userItem?.user ?? {};
  if (user.exec || user['auth-provider']) {
    return { needsClientNode: true, file: files.length === 1 ? files[0] : undefined, reason: user.exec ? 'exec credential plugin' : 'auth provider' };
  }
  const cdir = dirOf.get(clusterItem!) ?? '.';
  const udir = userItem ? (dirOf.get(userItem) ?? '.') : '.';
  const access: ClusterAccess = {
    server: cluster.server.replace(/\/+$/, ''),
    source: `kubeconfig ${where} (context ${ctxName})`,
    ca: dataOrFile(cluster['certificate-authority-data'], cluster['certificate-authority'], cdir),
    insecureSkipTLSVerify: cluster['insecure-skip-tls-verify'] === true,
    tlsServerName: typeof cluster['tls-server-name'] === 'string' ? cluster['tls-server-name'] : undefined,
    cert: dataOrFile(user['client-certificate-data'], user['client-certificate'], udir),
    key: dataOrFile(user['client-key-data'], user['client-key'], udir),
  };
  if (typeof user.token === 'string' && user.token) {
    const t = user.token;
    access.token = () => t;
  } else if (typeof user.tokenFile === 'string' && user.tokenFile) {
    const f = path.resolve(udir, user.tokenFile);
    access.token = () => fs.readFileSync(f, 'utf8').trim();
  }
  if (typeof user.username === 'string' && typeof user.password === 'string') access.basic = { username: user.username, password: user.password };
  return access;
}

function dataOrFile(data: unknown, file: unknown, dir: string): Buffer | undefined {
  if (typeof data === 'string' && data) return Buffer.from(data, 'base64');
  if (typeof file === 'string' && file) return fs.readFileSync(path.resolve(dir, file));
  return undefined;
}

function readOptional(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}
