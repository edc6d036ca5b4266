// `nft -j list table` in a canonical form, for tests that compare a table before and after something (hand-edit
// suites of both modes): handles stripped (a re-created object gets a new one), sets, maps, chains and rules in
// a fixed order (a re-created object lists last), set elements sorted (a re-filled hash set lists in another
// order). Rules keep their order within a chain: that order is meaningful.

type Json = Record<string, unknown>;

/** `nft -j list table ...` output, canonical (see above). */
export function canonicalTable(json: string): string {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v as Json).filter(([k]) => k !== 'handle').map(([k, x]) => [k, strip(x)]));
    return v;
  };
  const objects = ((JSON.parse(json) as { nftables: Json[] }).nftables).filter((o) => !('metainfo' in o)).map((o) => strip(o) as Json);
  for (const o of objects) {
    const s = (o.set ?? o.map) as Json | undefined;
    if (s?.elem) s.elem = (s.elem as unknown[]).map((e) => JSON.stringify(e)).sort().map((e) => JSON.parse(e) as unknown);
  }
  const KIND = ['table', 'set', 'map', 'chain', 'rule'];
  const kind = (o: Json) => Object.keys(o)[0];
  const name = (o: Json) => { const x = o[kind(o)] as Json; return String(kind(o) === 'rule' ? x.chain : x.name); };
  // Array.prototype.sort is stable: rules of one chain keep their order.
  objects.sort((a, b) => KIND.indexOf(kind(a)) - KIND.indexOf(kind(b)) || name(a).localeCompare(name(b)));
  return JSON.stringify(objects, null, 1);
}
