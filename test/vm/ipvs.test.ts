// Runs the IPVS suites (test/vm/guest) inside a Debian kernel booted under qemu: this machine's kernel has no IPVS.
// The guest sees this repository (and node, ipvsadm, nft, iproute2) through the host's root shared read-only, so
// it tests exactly this build. The guest's output is printed; its exit code decides.
import { describe, expect, it } from 'vitest';
import { runInGuest } from '../../scripts/lib/vm';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('IPVS in the qemu guest');

describe.runIf(haveRoot)('IPVS dataplane on a real Debian kernel (qemu guest)', () => {
  it('passes the guest suites', async () => {
    // The guest's console is a terminal to vitest: no colours, and output collected through a file (no live redraws).
    const r = await runInGuest('npx vitest run --config test/vm/vitest.guest.config.ts > /run/guest-tests.txt 2>&1; rc=$?; cat /run/guest-tests.txt; exit $rc', {
      timeoutMs: 25 * 60_000, env: { NO_COLOR: '1', FORCE_COLOR: '0' },
    });
    const output = r.output.replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '');
    process.stdout.write(output);
    expect(output).toMatch(/Test Files\s+\d+ passed/);
    expect(output).not.toMatch(/Test Files\s+.*failed/);
    expect(r.code).toBe(0);
  }, 30 * 60_000);
});
