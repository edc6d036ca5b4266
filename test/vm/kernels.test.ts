// The kernel matrix: the IPVS suites and the nftables kernel suites (test/vm/suites.ts) on Debian's kernels, booted
// under qemu (scripts/lib/vm.ts). The host suites cover this machine's kernel. `npm test` boots Debian 12's
// default, 6.1 (the oldest kernel the harness has, and what Amazon Linux 2023 runs); `npm run test:kernels` sets
// SVCPLANE_TEST_KERNELS=6.1,6.12. The guest sees this repository (and node, ipvsadm, nft, iproute2) through the
// host's root shared read-only, so it tests exactly this build. Its output is printed; every suite must be seen
// passing (a suite that did not run, or ran only skipped tests, fails here).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelPackage, prepareGuest, runInGuest } from '../../scripts/lib/vm';
import { REPO } from '../helpers/cli';
import { requireRoot } from '../helpers/root';
import { EBPF_KERNEL_SUITES, NFTABLES_KERNEL_SUITES } from './suites';

const haveRoot = requireRoot('the kernel matrix (qemu guests)');
const KERNELS = (process.env.SVCPLANE_TEST_KERNELS || '6.1').split(',').map((k) => k.trim()).filter(Boolean);
const IPVS_FILES = fs.readdirSync(path.join(REPO, 'test', 'vm', 'guest')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/vm/guest/${f}`);

// A guest run takes ~16 min under TCG on an idle 2-core machine, 25 min with both cores kept busy by other work
// (README: How long CI takes); the bound leaves room for more.
const GUEST_TIMEOUT_MS = 50 * 60_000;
const JSON_MARK = '@@SVCPLANE-GUEST-JSON@@';

describe.runIf(haveRoot).each(KERNELS)('Debian kernel %s (qemu guest)', (name) => {
  it('passes the IPVS suites and the nftables and ebpf kernel suites', async () => {
    const image = prepareGuest(kernelPackage(name));
    process.stdout.write(`guest kernel ${image.package} (${image.version})\n`);
    // The guest's console is a terminal to vitest: no colours, and output collected through files (no live redraws):
    // the verbose report for people, the JSON one to check every suite by file.
    const r = await runInGuest(`npx vitest run --config test/vm/vitest.guest.config.ts --reporter=verbose --reporter=json --outputFile.json=/run/guest-results.json > /run/guest-tests.txt 2>&1; rc=$?; cat /run/guest-tests.txt; echo ${JSON_MARK}; cat /run/guest-results.json; echo; echo ${JSON_MARK}; exit $rc`, {
      image, timeoutMs: GUEST_TIMEOUT_MS, env: { NO_COLOR: '1', FORCE_COLOR: '0' },
    });
    const output = r.output.replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '');
    const [text, json] = output.split(JSON_MARK);
    process.stdout.write(text);
    process.stdout.write(`guest kernel ${image.version}: ${r.seconds.toFixed(0)} s\n`);
    expect(json?.trim(), `no JSON report from the guest on ${image.version} (exit ${r.code})`).toBeTruthy();
    const report = JSON.parse(json) as { testResults: Array<{ name: string; status: string; assertionResults: Array<{ status: string }> }> };
    for (const file of [...IPVS_FILES, ...NFTABLES_KERNEL_SUITES, ...EBPF_KERNEL_SUITES]) {
      const res = report.testResults.find((t) => t.name.endsWith(`/${file}`));
      expect(res?.status, `${file} on ${image.version}`).toBe('passed');
      expect(res!.assertionResults.filter((a) => a.status === 'passed').length, `${file} on ${image.version}: tests that passed`).toBeGreaterThan(0);
    }
    expect(report.testResults.filter((t) => t.status !== 'passed').map((t) => t.name)).toEqual([]);
    expect(r.code).toBe(0);
  }, GUEST_TIMEOUT_MS + 5 * 60_000);
});
