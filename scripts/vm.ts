// `npm run vm -- <command...>`: runs a command in the IPVS test guest (a Debian kernel under qemu, see
// scripts/lib/vm.ts) from the repository root, streaming its output, and exits with the command's exit code.
import { KNOWN_KERNELS, kernelPackage, prepareGuest, runInGuest } from './lib/vm';

async function main(): Promise<number> {
  let argv = process.argv.slice(2);
  let kernel: string | undefined;
  if (argv[0] === '--kernel') {
    kernel = argv[1];
    argv = argv.slice(2);
  }
  if (argv.length === 0 || argv[0] === '--help') {
    process.stdout.write(`usage: npm run vm -- [--kernel ${Object.keys(KNOWN_KERNELS).join('|')}|PACKAGE] <command...>   (runs in the guest, as root, from the repository root; default kernel 6.1)\n`);
    return argv.length === 0 ? 2 : 0;
  }
  if (process.getuid?.() !== 0) throw new Error('the guest harness needs root (apt-get download, the cache under /var/cache)');
  const image = prepareGuest(kernelPackage(kernel));
  process.stderr.write(`vm: ${image.package} (${image.version}), TCG\n`);
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const r = await runInGuest(argv.map(quote).join(' '), { image, onOutput: (c) => process.stdout.write(c) });
  process.stderr.write(`vm: exit ${r.code} after ${r.seconds.toFixed(1)} s\n`);
  return r.code;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`vm: ${e.message}\n`);
    process.exit(1);
  },
);
