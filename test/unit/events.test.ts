// The event recorder's rate limits, on an injected clock (what reaches the API is tested in
// test/e2e/agent-cluster-config): the same event once per 5 minutes; all events a burst of 25, then one per 5 s.
import { describe, expect, it } from 'vitest';
import { BURST, EventRecorder, REFILL_MS, SAME_EVENT_MS } from '../../src/k8s/events';
import type { ApiTransport } from '../../src/k8s/transport';
import { silentLogger } from '../../src/log';

function recorder() {
  const posted: Array<{ path: string; body: Record<string, unknown> }> = [];
  const api = { server: 'x', source: 'test', getJSON: async () => ({}), stream: async () => { throw new Error('no'); },
    postJSON: async (path: string, body: unknown) => { posted.push({ path, body: body as Record<string, unknown> }); return body; } } as unknown as ApiTransport;
  let now = 1_000_000;
  const r = new EventRecorder(api, { node: 'n1', log: silentLogger, now: () => now });
  return { r, posted, advance: (ms: number) => (now += ms) };
}

describe('EventRecorder', () => {
  it('posts a problem on the object it names, once per 5 minutes for the same one', async () => {
    const { r, posted, advance } = recorder();
    r.problem({ object: 'Service shop/web', message: 'bad port' });
    r.problem({ object: 'Service shop/web', message: 'bad port' });
    r.problem({ object: 'manifests/x.yaml#2', message: 'not an API object: no event' });
    await r.close();
    expect(posted).toHaveLength(1);
    expect(posted[0].path).toBe('/apis/events.k8s.io/v1/namespaces/shop/events');
    expect(posted[0].body).toMatchObject({ type: 'Warning', reason: 'NotProgrammed', note: 'bad port', regarding: { kind: 'Service', namespace: 'shop', name: 'web' } });
    advance(SAME_EVENT_MS);
    r.problem({ object: 'Service shop/web', message: 'bad port' });
    r.problem({ object: 'EndpointSlice shop/web-1', message: 'another' });
    await r.close();
    expect(posted).toHaveLength(3);
    expect(posted[2].body).toMatchObject({ regarding: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1' } });
  });

  it('all events together: a burst, then one per refill period; the rest dropped', async () => {
    const { r, posted, advance } = recorder();
    for (let i = 0; i < BURST + 10; i++) r.problem({ object: `Service ns/s${i}`, message: 'x' });
    expect(r.dropped).toBe(10);
    advance(REFILL_MS);
    r.problem({ object: 'Service ns/late', message: 'x' });
    r.problem({ object: 'Service ns/later', message: 'x' });
    await r.close();
    expect(posted).toHaveLength(BURST + 1);
    expect(r.dropped).toBe(11);
  });
});
