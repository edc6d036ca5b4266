// What the ebpf mode needs, checked before it changes anything, each missing piece named in one line: the programs
// built, cgroup v2, the capabilities, and then (at load) bpffs and the verifier's verdict. An EbpfPreflightError is
// an environment the mode cannot run in: the CLI exits 2 with it, having changed nothing.
import * as fs from 'node:fs';

export class EbpfPreflightError extends Error {}

const CAP = { SYS_ADMIN: 21, NET_ADMIN: 12, BPF: 39 } as const;

/** The effective capabilities of this process (/proc/self/status CapEff), as a bit set. */
export function effectiveCapabilities(status = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/**
 * Loading cgroup sock_addr programs and creating their maps needs CAP_BPF (Linux 5.8+; CAP_SYS_ADMIN before, and
 * always enough) and CAP_NET_ADMIN (a networking program type); attaching to a cgroup needs CAP_NET_ADMIN too.
 * Returns what is missing, in words, or undefined.
 */
export function missingCapabilities(caps: bigint): string | undefined {
  const has = (c: number) => (caps >> BigInt(c)) & 1n;
  const missing: string[] = [];
  if (!has(CAP.BPF) && !has(CAP.SYS_ADMIN)) missing.push('CAP_BPF (or CAP_SYS_ADMIN)');
  if (!has(CAP.NET_ADMIN) && !has(CAP.SYS_ADMIN)) missing.push('CAP_NET_ADMIN');
  if (!missing.length) return undefined;
  return `the ebpf mode needs ${missing.join(' and ')} to load and attach its BPF programs; this process lacks ${missing.length > 1 ? 'them' : 'it'} (the DaemonSet's securityContext must add them)`;
}

/** A load or attach failure that is the environment's, not a bug: said in words, with the kernel's own. */
export function explainLoadFailure(err: Error & { code?: string }): EbpfPreflightError | undefined {
  const m = err.message;
  if (/mount bpffs|not on a bpf filesystem/.test(m)) return new EbpfPreflightError(`bpffs is not available: ${m}`);
  if (err.code === 'EPERM' || err.code === 'EACCES') return new EbpfPreflightError(`the kernel refused the BPF programs (${err.code}): ${m}`);
  if (/verifier|libbpf/.test(m)) return new EbpfPreflightError(`the kernel's verifier refused the socket-LB programs: ${m}`);
  if (err.code === 'EINVAL' && /attach/.test(m)) return new EbpfPreflightError(`this kernel cannot attach the socket hooks (cgroup sock_addr links need Linux 5.7; getpeername hooks 5.8): ${m}`);
  return undefined;
}

/** Whether a load failed only for bpf_set_retval (kernels before 5.18): the object without it is the fallback. */
export function needsNoRetvalObject(err: Error): boolean {
  return /set_retval|unknown func .*#187/.test(err.message);
}
