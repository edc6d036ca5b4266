// Kubernetes Events (events.k8s.io/v1), as kube-proxy's event recorder posts them: a Normal "Starting" on this Node
// when the agent starts (kube-proxy's birthCry), and a Warning on each Service or EndpointSlice svcplane skips or
// cannot program, so `kubectl describe service` shows why, not only the agent's log.
//
// Rate limited, as client-go's spam filter and correlator do, so a broken object cannot flood the API server:
// * the same event (object, reason, note) at most once per SAME_EVENT_MS;
// * all events together: a burst of BURST, then one per REFILL_MS (a token bucket); past it, dropped.
// Posting is best effort and never waits the caller: a failure is logged at debug and not retried (an Event is not
// worth holding memory or connections for; the log line says the same).
import type { Logger } from '../log';
import type { ModelProblem } from '../model/types';
import type { ApiTransport } from './transport';

export const SAME_EVENT_MS = 5 * 60_000;
export const BURST = 25;
export const REFILL_MS = 5_000;
/** Events for cluster-scoped objects (the Node) go to this namespace, as kubectl and client-go put them. */
const CLUSTER_SCOPED_NAMESPACE = 'default';

export interface ObjectRef {
  kind: 'Node' | 'Service' | 'EndpointSlice';
  apiVersion: string;
  namespace?: string;
  name: string;
}

export class EventRecorder {
  private tokens = BURST;
  private refilledAt: number;
  private readonly lastSent = new Map<string, number>();
  private readonly abort = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  posted = 0;
  dropped = 0;

  constructor(
    private readonly api: ApiTransport,
    private readonly o: { node: string; log: Logger; now?: () => number },
  ) {
    this.refilledAt = this.now();
  }

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** kube-proxy's "Starting" event on this Node. */
  starting(): void {
    this.post({ kind: 'Node', apiVersion: 'v1', name: this.o.node }, 'Normal', 'Starting', 'StartKubeProxy', `svcplane started on node ${this.o.node}`);
  }

  /** A Warning on the object a model problem names ("Service ns/name", "EndpointSlice ns/name"); others ignored. */
  problem(p: ModelProblem): void {
    const m = /^(Service|EndpointSlice) ([^/\s]+)\/(\S+)$/.exec(p.object);
    if (!m) return;
    const kind = m[1] as 'Service' | 'EndpointSlice';
    this.post({ kind, apiVersion: kind === 'Service' ? 'v1' : 'discovery.k8s.io/v1', namespace: m[2], name: m[3] }, 'Warning', 'NotProgrammed', 'Sync', p.message);
  }

  post(regarding: ObjectRef, type: 'Normal' | 'Warning', reason: string, action: string, note: string): void {
    const now = this.now();
    const key = `${regarding.kind}/${regarding.namespace ?? ''}/${regarding.name}|${reason}|${note}`;
    const last = this.lastSent.get(key);
    if (last !== undefined && now - last < SAME_EVENT_MS) return;
    this.tokens = Math.min(BURST, this.tokens + Math.floor((now - this.refilledAt) / REFILL_MS));
    this.refilledAt += Math.floor((now - this.refilledAt) / REFILL_MS) * REFILL_MS;
    if (this.tokens < 1) {
      this.dropped++;
      this.o.log.debug('event dropped (rate limit)', { object: `${regarding.kind} ${regarding.name}`, reason });
      return;
    }
    this.tokens--;
    this.lastSent.set(key, now);
    if (this.lastSent.size > 10_000) for (const [k, t] of this.lastSent) if (now - t >= SAME_EVENT_MS) this.lastSent.delete(k);
    const namespace = regarding.namespace ?? CLUSTER_SCOPED_NAMESPACE;
    const time = new Date(now);
    const body = {
      apiVersion: 'events.k8s.io/v1', kind: 'Event',
      // client-go's naming: the object's name and the time in hex, unique enough per object.
      metadata: { name: `${regarding.name}.${(now * 1000 + Math.floor(Math.random() * 1000)).toString(16)}`, namespace },
      eventTime: time.toISOString().replace('Z', '000Z'), // MicroTime: six fractional digits
      reportingController: 'svcplane', reportingInstance: `svcplane-${this.o.node}`,
      action, reason, type, note: note.slice(0, 1024),
      regarding: { kind: regarding.kind, apiVersion: regarding.apiVersion, name: regarding.name, ...(regarding.namespace ? { namespace: regarding.namespace } : {}) },
    };
    const p = this.api.postJSON(`/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/events`, body, this.abort.signal).then(
      () => void this.posted++,
      (e: Error) => this.o.log.debug('could not post an event', { object: `${regarding.kind} ${regarding.name}`, reason, error: e.message }),
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Waits (briefly) for events being posted, then gives up on the rest. */
  async close(waitMs = 2000): Promise<void> {
    await Promise.race([Promise.all(this.inFlight), new Promise((r) => setTimeout(r, waitMs).unref())]);
    this.abort.abort();
  }
}
