// Human-readable output: a status table like `ipvsadm -Ln` (service address:port proto, then its endpoints).
import type { StatusReport, StatusRow, SyncResult } from '../dataplane/types';

function hostPort(address: string, port: number, family: 4 | 6): string {
  return family === 6 && address !== '*' ? `[${address}]:${port}` : `${address}:${port}`;
}

export function formatStatus(st: StatusReport): string {
  if (!st.present) return `svcplane ${st.mode}: nothing programmed`;
  const lines: string[] = [];
  const services = new Set(st.rows.filter((r) => !r.reject).map((r) => r.service)).size;
  lines.push(`svcplane ${st.mode}: ${st.rows.length} service address(es), ${services} service port(s) with endpoints`);
  lines.push('Prot LocalAddress:Port                          Kind       Service');
  lines.push('  -> RemoteAddress:Port');
  for (const r of st.rows) lines.push(...formatRow(r));
  return lines.join('\n');
}

function formatRow(r: StatusRow): string[] {
  const head = `${r.protocol.padEnd(4)} ${hostPort(r.address, r.port, r.family).padEnd(42)} ${r.kind.padEnd(10)} ${r.service}${r.reject ? ' (no endpoints: rejected)' : ''}`;
  return [head, ...r.endpoints.map((e) => `  -> ${hostPort(e.address, e.port, r.family)}`)];
}

export function formatSyncSummary(mode: string, files: number, res: SyncResult, problems: number): string {
  const kb = (res.bytes / 1024).toFixed(1);
  const ms = (us: number) => (us / 1000).toFixed(1);
  const ops = res.operations === 0 ? 'nothing to change' : `${res.operations} operations (${kb} KiB) in one transaction`;
  return [
    `svcplane ${mode}: ${res.full ? 'full' : 'partial'} sync of ${res.servicePorts} service port(s) from ${files} file(s): ${ops}`,
    `  kernel ${ms(res.kernelMicros)} ms, total ${ms(res.totalMicros)} ms${problems ? `; ${problems} object(s) skipped or not programmed (see log)` : ''}`,
  ].join('\n');
}
