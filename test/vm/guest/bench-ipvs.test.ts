// `svcplane bench --mode ipvs` on a kernel with IPVS (the guest's): the IPVS case runs in the throwaway namespace
// (virtual services, svcplane0 and the helper table made there, gone with it) and its JSON fits the schema. The
// host has no IPVS: there the bench reports the mode as skipped (test/kernel/bench-cli.test.ts).
import Ajv2020 from 'ajv/dist/2020';
import { describe, expect, it } from 'vitest';
import { BENCH_SCHEMA, type BenchReport } from '../../../src/bench/schema';
import { svcplane } from '../../helpers/cli';

const inGuest = process.env.SVCPLANE_IN_GUEST === '1';

describe.runIf(inGuest)('svcplane bench --mode ipvs (guest kernel)', () => {
  it('a full sync and a churn phase at two sizes, ipvsadm --restore beside; the JSON fits the schema', async () => {
    const r = await svcplane(['bench', '--mode', 'ipvs', '--services', '10,30', '--duration', '1s', '--churn', '20/s', '--peers', '--output', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;
    const validate = new Ajv2020({ allErrors: true, strict: true }).compile(BENCH_SCHEMA);
    expect(validate(report), JSON.stringify(validate.errors)).toBe(true);
    expect(report.cases.map((c) => [c.mode, c.services, c.skipped])).toEqual([['ipvs', 10, undefined], ['ipvs', 30, undefined]]);
    for (const c of report.cases) {
      expect(c.fullSync!.operations).toBeGreaterThan(c.services);
      // Messages count IPVS's and rtnetlink's writes as well as the nftables table's (one per operation, and the
      // nftables batches' begin and end).
      expect(c.fullSync!.netlinkMessages).toBeGreaterThanOrEqual(c.fullSync!.operations);
      expect(c.churn!.perChange.netlinkMessages).toBeGreaterThanOrEqual(c.churn!.perChange.operations);
      expect(c.churn!.changes).toBe(20);
      // The IPVS floor: the sync's IPVS and rtnetlink writes replayed as sent into an empty namespace (null would
      // mean the kernel refused the replay).
      expect(c.fullSync!.ipvsFloorRefused).toBeUndefined();
      expect(c.fullSync!.ipvsFloorSeconds).toBeGreaterThan(0);
    }
    // --peers with the ipvs mode: ipvsadm --restore of the same Services loads in its empty namespace.
    const ipvsadm = report.peers!.filter((p) => p.tool === 'ipvsadm --restore');
    expect(ipvsadm.map((p) => [p.services, p.error])).toEqual([[10, undefined], [30, undefined]]);
    for (const p of ipvsadm) expect(p.seconds).toBeGreaterThan(0);
  });
});
