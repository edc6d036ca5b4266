// List, then watch from the list's resourceVersion: client-go's reflector (tools/cache/reflector.go), without its
// object cache. Why not @kubernetes/client-node's makeInformer (1.4): it keeps every object as the API sent it
// (at 30k Services plus their slices, more heap than the agent's whole budget), lists without pagination, never
// asks for bookmarks, and stops for good on any error other than 410. Here:
// * the list is paginated (limit 500) and each page handed over as it comes; the caller keeps parsed state only;
//   a list that fails part-way has applied only up-to-date objects, and is retried whole;
// * every request is bounded (transport.ts: connect, headers, a list page's body); the watch asks for bookmarks
//   and a server-side timeout (5-10 min, randomised so a fleet of agents does not re-watch in step) and has a
//   client-side inactivity timeout, so a half-open connection is noticed; a watch line longer than
//   MAX_WATCH_LINE_BYTES ends the watch (and relists) instead of growing without bound;
// * a stream that ends cleanly after a healthy run is re-watched at once from the last resourceVersion; one that
//   ends within a second having delivered nothing is a failure (client-go's "very short watch");
// * ERROR 410 (Expired/Gone), on the stream or as the HTTP status, means that resourceVersion is compacted:
//   relist, at once the first time (also when the failures before it were an outage: the server is back, and its
//   history went on without us), then with the backoff (a server answering 410 to every watch is not relisted in a
//   tight loop);
// * any other failure (refused, reset, 5xx, timeouts) backs off 0.8 s doubling to 30 s with jitter (client-go's
//   numbers), or as long as the server's Retry-After says (429/503), then re-watches from the last
//   resourceVersion, relisting only if that has expired meanwhile. The backoff resets once a watch is healthy
//   (it delivered something, or stayed open a second).
// Each restart is counted (svcplane_watch_restarts_total); a failure streak is reported (`failing`) until a watch
// is healthy again (`recovered`), so /healthz can say the agent is blind. Nothing here touches the dataplane: an
// API server gone for any length of time leaves it as it is.
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../log';
import { ApiError, type ApiTransport } from './transport';

export interface WatchObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface ReflectorHandlers {
  /**
   * A complete list (at start, or after 410), handed over page by page so no whole list of API objects is ever
   * held: `listPage` for each page, then `listDone`. Together they replace everything known of this resource.
   */
  listPage(items: WatchObject[], first: boolean): void;
  listDone(): void;
  event(type: WatchEventType, obj: WatchObject): void;
  /** A restart of the watch, and why (for metrics). */
  restarted?(reason: RestartReason): void;
  /** A failure streak began or goes on: the newest error. */
  failing?(error: string): void;
  /** A watch is healthy again after a failure streak. */
  recovered?(): void;
  /**
   * The first list was answered 404 (this server does not serve the resource: an older Kubernetes) or 403 (RBAC
   * does not allow it). Returning true stops the reflector for good, instead of retrying an answer that will not
   * change; for resources the agent can do without (ServiceCIDRs).
   */
  unavailable?(statusCode: 403 | 404, message: string): boolean;
}

/** closed: ended cleanly after a healthy run; short: ended at once with nothing; expired: 410; error: any failure. */
export type RestartReason = 'closed' | 'short' | 'expired' | 'error';

/**
 * Longest watch line (one event, one object) accepted. The API server refuses request bodies over 3 MiB and etcd
 * objects over 1.5 MiB, so a real event is far below this; a longer line is a broken or hostile stream.
 */
export const MAX_WATCH_LINE_BYTES = 8 * 1024 * 1024;

/** Least time between two warnings of one failure streak (the backoff's steps in between are logged at debug). */
const WARN_EVERY_MS = 10_000;

/** A watch that lasted less than this and delivered nothing is a failure (client-go's "very short watch"). */
const SHORT_WATCH_MS = 1000;

export interface ReflectorOptions {
  /** e.g. /api/v1/services, /apis/discovery.k8s.io/v1/endpointslices, /api/v1/nodes */
  path: string;
  /** Name for logs and metrics ("services"). */
  resource: string;
  fieldSelector?: string;
  labelSelector?: string;
  pageSize?: number;
  /** Server-side watch timeout range, seconds. */
  watchTimeoutSeconds?: [number, number];
  /** No byte for this long (ms, default 3 min) ends the watch as failed: bookmarks arrive about every minute. */
  inactivityMs?: number;
  backoff?: { initialMs: number; maxMs: number };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

class Expired extends Error {}
class ShortWatch extends Error {}

export class Reflector {
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private rv = '';
  private failures = 0;
  /** 410s in a row (any other failure, or a healthy watch, ends the run): the first relists at once. */
  private expiries = 0;
  private listedOnce = false;
  private lastWarnAt = 0;
  lists = 0;
  watches = 0;

  constructor(
    private readonly api: ApiTransport,
    private readonly o: ReflectorOptions,
    private readonly h: ReflectorHandlers,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  get hasListed(): boolean {
    return this.listedOnce;
  }

  private get signal(): AbortSignal {
    return this.abort.signal;
  }

  private async loop(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        if (!this.rv) await this.list();
        await this.watch();
        this.h.restarted?.('closed');
        this.log.debug('watch ended; resuming', { resource: this.o.resource, resourceVersion: this.rv });
      } catch (e) {
        if (this.signal.aborted) break;
        if (!this.listedOnce && e instanceof ApiError && (e.statusCode === 404 || e.statusCode === 403) && this.h.unavailable?.(e.statusCode, e.message)) break;
        await this.failed(e as Error);
      }
    }
  }

  /** One failure of a streak: counted, reported, logged, and waited out (the backoff, or the server's Retry-After). */
  private async failed(e: Error): Promise<void> {
    const expired = e instanceof Expired || (e instanceof ApiError && e.statusCode === 410);
    const reason: RestartReason = expired ? 'expired' : e instanceof ShortWatch ? 'short' : 'error';
    this.failures++;
    this.expiries = expired ? this.expiries + 1 : 0;
    this.h.restarted?.(reason);
    if (expired) this.rv = '';
    const b = this.o.backoff ?? { initialMs: 800, maxMs: 30_000 };
    const backoff = Math.min(b.maxMs, b.initialMs * 2 ** (this.failures - 1)) * (1 + Math.random());
    // An expiry is routine (compaction; or history moved on during an outage, the server now answering): relist at
    // once. One after another is not. (Counting it as the n-th failure of the outage made the first relist after a
    // 30 s outage wait up to a minute.)
    const wait = e instanceof ApiError && e.retryAfterMs !== undefined ? e.retryAfterMs : expired && this.expiries === 1 ? 0 : backoff;
    if (expired) {
      this.log.info('resourceVersion expired; relisting', { resource: this.o.resource, relistInMs: Math.round(wait), failures: this.failures });
    } else {
      // Every backoff step is a warning naming the server (an operator looking at a stuck agent needs the address and
      // the error now, not the first line of the streak scrolled away), at most one per WARN_EVERY_MS per resource;
      // the rest go to debug so an outage does not flood the log.
      const now = Date.now();
      const warn = this.failures === 1 || now - this.lastWarnAt >= WARN_EVERY_MS;
      if (warn) this.lastWarnAt = now;
      // A hint (the address may be a ClusterIP nothing routes yet) goes with errors that never reached a server.
      const hint = !(e instanceof ApiError) && this.api.hint ? { hint: this.api.hint } : {};
      (warn ? this.log.warn : this.log.debug)(this.listedOnce ? 'watch failed; retrying (the dataplane stays as programmed)' : 'cannot list from the API server; retrying', {
        resource: this.o.resource, server: this.api.server, error: e.message, retryInMs: Math.round(wait), failures: this.failures, ...hint,
      });
    }
    if (!expired || this.failures > 1) this.h.failing?.(e.message);
    await sleep(wait, this.signal);
  }

  /** The watch is working (delivered something, or stayed open SHORT_WATCH_MS): the failure streak ends. */
  private healthy(): void {
    if (this.failures === 0) return;
    this.failures = 0;
    this.expiries = 0;
    this.h.recovered?.();
  }

  private query(extra: Record<string, string>): string {
    const q = new URLSearchParams();
    if (this.o.fieldSelector) q.set('fieldSelector', this.o.fieldSelector);
    if (this.o.labelSelector) q.set('labelSelector', this.o.labelSelector);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return `${this.o.path}?${q}`;
  }

  private async list(): Promise<void> {
    let cont = '';
    let rv = '';
    let count = 0;
    let first = true;
    do {
      const page = (await this.api.getJSON(this.query({ limit: String(this.o.pageSize ?? 500), ...(cont ? { continue: cont } : {}) }), this.signal)) as {
        metadata?: { resourceVersion?: string; continue?: string };
        items?: WatchObject[];
      };
      if (!Array.isArray(page.items)) throw new Error(`list ${this.o.path}: no items in the response`);
      this.h.listPage(page.items, first);
      first = false;
      count += page.items.length;
      rv = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue ?? '';
    } while (cont);
    if (!rv) throw new Error(`list ${this.o.path}: no resourceVersion in the response`);
    this.lists++;
    this.rv = rv;
    this.listedOnce = true;
    this.log.debug('listed', { resource: this.o.resource, items: count, resourceVersion: rv });
    this.h.listDone();
  }

  /** One watch, to its end. Throws on failure, on 410 (Expired), and when it ended at once with nothing (ShortWatch). */
  private async watch(): Promise<void> {
    const [lo, hi] = this.o.watchTimeoutSeconds ?? [300, 600];
    const timeoutSeconds = Math.floor(lo + Math.random() * (hi - lo));
    const ac = new AbortController();
    const onStop = () => ac.abort();
    this.signal.addEventListener('abort', onStop);
    this.watches++;
    try {
      const res = await this.api.stream(this.query({ watch: 'true', resourceVersion: this.rv, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) }), ac.signal);
      await this.consume(res, ac, this.o.inactivityMs ?? 180_000);
    } finally {
      this.signal.removeEventListener('abort', onStop);
      ac.abort();
    }
  }

  private consume(res: IncomingMessage, ac: AbortController, inactivityMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // The line being received, in chunks: only each new chunk is searched for '\n' (a long line costs its
      // length once, not its length squared), and its size is bounded.
      let parts: string[] = [];
      let partBytes = 0;
      let healthy = false;
      let failed: Error | undefined;
      let idle: NodeJS.Timeout | undefined;
      const markHealthy = () => {
        if (healthy) return;
        healthy = true;
        clearTimeout(settle);
        this.healthy();
      };
      const settle = setTimeout(markHealthy, SHORT_WATCH_MS);
      const fail = (e: Error) => {
        failed ??= e;
        res.destroy();
      };
      const armIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => fail(new Error(`watch ${this.o.path}: nothing received for ${Math.round(inactivityMs / 1000)} s`)), inactivityMs);
      };
      armIdle();
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (failed) return;
        armIdle();
        let from = 0;
        let nl: number;
        while ((nl = chunk.indexOf('\n', from)) >= 0) {
          parts.push(chunk.slice(from, nl));
          const line = parts.join('').trim();
          parts = [];
          partBytes = 0;
          from = nl + 1;
          if (!line) continue;
          try {
            if (this.handleLine(line)) markHealthy();
          } catch (e) {
            return fail(e as Error);
          }
        }
        if (from < chunk.length) {
          parts.push(from ? chunk.slice(from) : chunk);
          partBytes += chunk.length - from;
          // Characters, not bytes: a line of multi-byte text is cut later, never sooner. The watch is dropped and
          // the resource relisted (the event it carried is lost with the stream; the list has its outcome).
          if (partBytes > MAX_WATCH_LINE_BYTES) {
            this.rv = '';
            fail(new Error(`watch ${this.o.path}: an event line over ${MAX_WATCH_LINE_BYTES / 1048576} MiB without a newline; dropping the watch and relisting`));
          }
        }
      });
      const finish = (err?: Error) => {
        clearTimeout(idle);
        clearTimeout(settle);
        if (failed) return reject(failed);
        if (err) return reject(ac.signal.aborted && this.signal.aborted ? new Error('stopped') : err);
        if (!healthy) return reject(new ShortWatch(`watch ${this.o.path}: closed by the server within ${SHORT_WATCH_MS / 1000} s with no event`));
        resolve();
      };
      res.on('end', () => finish());
      res.on('error', (e) => finish(e));
      res.on('close', () => finish(res.complete ? undefined : new Error(`watch ${this.o.path}: connection closed mid-stream`)));
    });
  }

  /** Applies one event line; true if it was an event or a bookmark. Throws Expired on ERROR 410. */
  private handleLine(line: string): boolean {
    const ev = JSON.parse(line) as { type?: string; object?: WatchObject & { code?: number; reason?: string; message?: string } };
    const obj = ev.object;
    if (ev.type === 'ERROR') {
      if (obj?.code === 410) throw new Expired(obj.message ?? 'expired');
      throw new ApiError(`watch ${this.o.path}: ERROR ${obj?.code ?? '?'} ${obj?.reason ?? ''}: ${obj?.message ?? ''}`, obj?.code ?? 0, obj?.reason);
    }
    const rv = obj?.metadata?.resourceVersion;
    if (ev.type === 'BOOKMARK') {
      if (rv) this.rv = rv;
      return true;
    }
    if (ev.type !== 'ADDED' && ev.type !== 'MODIFIED' && ev.type !== 'DELETED') {
      this.log.warn('unknown watch event type; ignored', { resource: this.o.resource, type: ev.type });
      return false;
    }
    if (!obj) return false;
    this.h.event(ev.type, obj);
    if (rv) this.rv = rv;
    return true;
  }
}
