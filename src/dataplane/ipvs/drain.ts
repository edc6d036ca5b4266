// Graceful termination (kubernetes/kubernetes#92019 in mind): a TCP/SCTP real server that is no longer wanted first
// gets weight 0 (no new connections) and is deleted once it has no active or inactive connections, or after the
// graceful timeout. The weight-0 state lives in the kernel (weight 0 on a real server svcplane does not want), so a
// restarted svcplane carries on draining instead of leaving weights at 0, and an endpoint that comes back gets its
// weight back. This keeps when each drain began (on the injected clock) and reaps.
import type { Logger } from '../../log';
import { type ApplyResult, OpBatch } from './client';
import { destKey } from './desired';
import { ENOENT } from './errno';
import type { IpvsKernel } from './ipvsKernel';
import * as ipvs from '../../netlink/ipvs';
import type { ProgrammedService } from './programmed';

export const NOTHING_APPLIED: Readonly<ApplyResult> = Object.freeze({ operations: 0, sends: 0, bytes: 0, kernelMicros: 0, failures: [] });

/** Draining real servers: `${vsKey}#${destKey}` -> when draining began (ms, on the clock). */
export class Drainer {
  private readonly began = new Map<string, number>();

  constructor(private readonly gracefulTimeoutMs: number, private readonly log: Logger) {}

  get size(): number {
    return this.began.size;
  }

  /** A real server starts draining now (kept if it already was). */
  start(vs: string, dest: string, now: number): void {
    const id = `${vs}#${dest}`;
    if (!this.began.has(id)) this.began.set(id, now);
  }

  /** A real server is wanted again. */
  cancel(vs: string, dest: string): void {
    if (this.began.size) this.began.delete(`${vs}#${dest}`);
  }

  /**
   * Deletes draining real servers whose connections have ended (or that waited the graceful timeout), reading
   * their connection counts from the kernel. `programmed` (by vsKey) loses the ones deleted.
   */
  async reap(kernel: IpvsKernel, programmed: Map<string, ProgrammedService>, now: number): Promise<ApplyResult> {
    if (this.began.size === 0) return { ...NOTHING_APPLIED, failures: [] };
    const fam = await kernel.familyId();
    const byService = new Map<string, string[]>();
    for (const id of this.began.keys()) {
      const [k, dk] = id.split('#');
      const list = byService.get(k);
      if (list) list.push(dk);
      else byService.set(k, [dk]);
    }
    const keys = [...byService.keys()].filter((k) => programmed.has(k));
    for (const k of byService.keys()) if (!programmed.has(k)) for (const dk of byService.get(k)!) this.began.delete(`${k}#${dk}`);
    const states = await kernel.listDests(keys.map((k) => programmed.get(k)!.vs));
    const ops = new OpBatch();
    let deleted = 0;
    keys.forEach((k, i) => {
      const svc = programmed.get(k)!;
      for (const dk of byService.get(k)!) {
        const id = `${k}#${dk}`;
        const st = states[i].find((d) => destKey(d) === dk);
        if (!st) {
          this.began.delete(id);
          svc.dests.delete(dk);
          continue;
        }
        const idle = st.activeConns === 0 && st.inactiveConns === 0;
        const expired = now - this.began.get(id)! >= this.gracefulTimeoutMs;
        if (!idle && !expired) continue;
        ipvs.writeDelDest(ops.w, fam, svc.vs, st);
        ops.op(`delete drained real server ${dk.replace('|', ':')} from ${ipvs.serviceKeyString(svc.vs)}${expired && !idle ? ' (graceful period over)' : ''}`, [ENOENT]);
        deleted++;
        this.began.delete(id);
        svc.dests.delete(dk);
      }
    });
    if (deleted) this.log.info('drained real servers deleted', { count: deleted, draining: this.began.size });
    return kernel.applyIpvs(ops);
  }
}
