// Runs the IPVS suites (test/vm/guest) inside a Debian kernel booted under qemu: this machine's kernel has no IPVS.
// The guest sees this repository (and node, ipvsadm, nft, iproute2) through the host's root shared read-only, so
// it tests exactly this build. The guest's output is printed; its exit code decides.
import { describe, expect, it } from 'vitest';
import { runInGuest } from '../../scripts/lib/vm';
import { requireRoot } from '../helpers/root';

const haveRoot = requireRoot('IPVS in the qemu guest');

describe.runIf(haveRoot)('IPVS dataplane on a real Debian kernel (qemu guest)', () => {
  it('passes the guest suites', async () => {
    const r = await runInGuest('npx vitest run --config test/vm/vitest.guest.config.ts', { timeoutMs: 25 * 60_000 });
    process.stdout.write(r.output);
    expect(r.output).toMatch(/Test Files\s+\d+ passed/);
    expect(r.code).toBe(0);
  }, 30 * 60_000);
});
