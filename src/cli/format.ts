// Human-readable output: a status table like `ipvsadm -Ln` (service address:port proto, then its endpoints).
import type { StatusReport, StatusRow, SyncPlan, SyncResult } from '../dataplane/types';
import type { KernelReport } from '../dataplane/nftables/kernel';

/** "nf_tables on 6.1.0-57-amd64: no map-membership (Linux 6.5): ..." - the shape chosen for this kernel. */
export function formatKernel(k: KernelReport): string {
  return `nf_tables on ${k.release}: ${k.shape}`;
}

function hostPort(address: string, port: number, family: 4 | 6): string {
  return family === 6 && address !== '*' ? `[${address}]:${port}` : `${address}:${port}`;
}

export function formatStatus(st: StatusReport): string {
  const kernel = st.kernel ? `\n${formatKernel(st.kernel)}` : '';
  // Warnings first: they say the rows below are not what the kernel does.
  const warnings = (st.warnings ?? []).map((w) => `\nwarning: ${w}`).join('');
  if (!st.present) return `svcplane ${st.mode}: nothing programmed${kernel}${warnings}`;
  const lines: string[] = [];
  const services = new Set(st.rows.filter((r) => !r.reject).map((r) => r.service)).size;
  lines.push(`svcplane ${st.mode}: ${st.rows.length} service address(es), ${services} service port(s) with endpoints`);
  if (st.kernel) lines.push(formatKernel(st.kernel));
  if (warnings) lines.push(warnings.slice(1));
  if (st.mode === 'ipvs') {
    // ipvsadm -Ln's columns, so an IPVS operator reads it at a glance.
    lines.push('Prot LocalAddress:Port Scheduler Flags');
    lines.push('  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn');
    for (const r of st.rows) {
      const flags = r.persistentSeconds ? ` persistent ${r.persistentSeconds}` : '';
      lines.push(`${r.protocol.padEnd(4)} ${hostPort(r.address, r.port, r.family)} ${r.scheduler ?? ''}${flags}${r.service ? `  (${r.service})` : ''}`);
      for (const e of r.endpoints) {
        lines.push(`  -> ${hostPort(e.address, e.port, r.family).padEnd(28)} Masq    ${String(e.weight ?? '').padEnd(6)} ${String(e.activeConns ?? '').padEnd(10)} ${e.inactiveConns ?? ''}`);
      }
    }
    return lines.join('\n');
  }
  if (st.socketLB) lines.push(`socket LB: ${st.socketLB.links} links, ${st.socketLB.frontends} frontends in the maps, ${(st.socketLB.mapBytes / 1048576).toFixed(1)} MiB of map memory`);
  lines.push('Prot LocalAddress:Port                          Kind       Service');
  lines.push('  -> RemoteAddress:Port');
  for (const r of st.rows) lines.push(...formatRow(r));
  return lines.join('\n');
}

function formatRow(r: StatusRow): string[] {
  const socket = r.socket ? ` [on node: ${r.socket} at the socket]` : '';
  const head = `${r.protocol.padEnd(4)} ${hostPort(r.address, r.port, r.family).padEnd(42)} ${r.kind.padEnd(10)} ${r.service}${r.reject ? ' (no endpoints: rejected)' : ''}${socket}`;
  return [head, ...r.endpoints.map((e) => `  -> ${hostPort(e.address, e.port, r.family)}`)];
}

/** `sync --once --dry-run` / `diff`: element changes per Service port, then the table's own operations. */
export function formatPlan(plan: SyncPlan, files: number, servicePorts: number): string {
  const lines = [`svcplane ${plan.mode} dry run: ${servicePorts} service port(s) from ${files} file(s): ${plan.operations === 0 ? 'nothing would change' : `${plan.operations} operation(s) would be sent`}; nothing applied`];
  const sets = (r: Record<string, number>, sign: string) => Object.entries(r).sort(([a], [b]) => a.localeCompare(b)).map(([s, n]) => `${sign}${n} ${s}`);
  const names = Object.keys(plan.services);
  const width = Math.min(48, Math.max(0, ...names.map((n) => n.length)));
  for (const name of names) lines.push(`  ${name.padEnd(width)}  ${[...sets(plan.services[name].add, '+'), ...sets(plan.services[name].delete, '-')].join(', ')}`);
  for (const op of plan.table) lines.push(`  ${'(table)'.padEnd(width)}  ${op}`);
  return lines.join('\n');
}

export function formatSyncSummary(mode: string, files: number, res: SyncResult, problems: number, kernel?: KernelReport): string {
  const kb = (res.bytes / 1024).toFixed(1);
  const ms = (us: number) => (us / 1000).toFixed(1);
  const ops = res.operations === 0 ? 'nothing to change' : `${res.operations} operations (${kb} KiB)${mode === 'nftables' ? ' in one transaction' : ''}`;
  return [
    `svcplane ${mode}: ${res.full ? 'full' : 'partial'} sync of ${res.servicePorts} service port(s) from ${files} file(s): ${ops}`,
    `  kernel ${ms(res.kernelMicros)} ms, total ${ms(res.totalMicros)} ms${problems ? `; ${problems} object(s) skipped or not programmed (see log)` : ''}`,
    ...(kernel ? [`  ${formatKernel(kernel)}`] : []),
  ].join('\n');
}
