// The real-kernel harness: this machine's kernel has no IPVS, so IPVS is tested in a Debian kernel booted under qemu
// (TCG: nested virtualisation does not work here). Test tooling, not product code: it runs apt-get, dpkg-deb,
// depmod, cpio and qemu.
//
// * The kernel package (default: whatever linux-image-amd64 depends on; SVCPLANE_VM_KERNEL=<package> to choose)
//   is fetched with `apt-get download`, unpacked and depmod'ed into a cache folder, and an initramfs is built
//   around busybox-static, the modules the tests need and scripts/vm/guest-init.sh. Both are cached under
//   /var/cache/svcplane-vm/<package>/ and rebuilt only when the init script or module list changes.
// * The guest sees this machine's whole root read-only over 9p, under a tmpfs overlay (writable, discarded at
//   power-off), so it runs this machine's node, the built addon, ipvsadm, nft and iproute2 as they are.
// * A command is passed through a run folder under /var/cache/svcplane-vm/runs (the guest sees the host's tree,
//   /tmp included, through the overlay); its output comes back on the serial console, ending with an exit marker.
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const CACHE = process.env.SVCPLANE_VM_CACHE ?? '/var/cache/svcplane-vm';
const REPO = path.resolve(__dirname, '..', '..', __dirname.includes(`${path.sep}dist${path.sep}`) ? '..' : '');
const INIT = path.join(REPO, 'scripts', 'vm', 'guest-init.sh');

/** Modules loaded at boot (with their hard dependencies). */
export const GUEST_MODULES = [
  'virtio_pci', 'virtio_net', '9pnet_virtio', '9p', 'overlay',
  'veth', 'dummy', 'bridge', 'br_netfilter',
  'nf_conntrack', 'nf_conntrack_netlink', 'nf_nat', 'nf_tables', 'nft_ct', 'nft_nat', 'nft_chain_nat', 'nft_masq', 'nft_numgen',
  'nft_reject', 'nft_reject_inet', 'nft_reject_ipv4', 'nft_reject_ipv6', 'nft_fib', 'nft_fib_inet', 'nft_fib_ipv4', 'nft_fib_ipv6',
  'nft_redir', 'nft_hash', 'nft_limit', 'nft_compat', 'nf_defrag_ipv4', 'nf_defrag_ipv6',
  'ip_vs', 'ip_vs_rr', 'ip_vs_wrr', 'ip_vs_lc', 'ip_vs_wlc', 'ip_vs_lblc', 'ip_vs_lblcr', 'ip_vs_sh', 'ip_vs_dh', 'ip_vs_sed', 'ip_vs_nq', 'ip_vs_mh',
  'sctp',
  // iptables-legacy (the benchmarks' kube-proxy iptables peer): its tables and the matches/targets kube-proxy's rules
  // use. Loaded up front: iptables asks the chroot's own modprobe (the host's kmod, which knows no guest kernel).
  'ip_tables', 'iptable_filter', 'iptable_nat', 'ip6_tables', 'ip6table_filter', 'ip6table_nat', 'xt_comment', 'xt_mark',
  'xt_conntrack', 'xt_statistic', 'xt_addrtype', 'xt_MASQUERADE', 'xt_nat', 'xt_tcpudp', 'xt_nfacct', 'ipt_REJECT', 'ip6t_REJECT',
];

/** Bumped when the way the initramfs is put together changes (its cached image is rebuilt). */
const INITRAMFS_LAYOUT = '2: compressed single modules';

/** Module folders copied into the initramfs (relative to /lib/modules/<version>). */
const MODULE_DIRS = [
  'kernel/net/netfilter', 'kernel/net/ipv4', 'kernel/net/ipv6', 'kernel/net/bridge', 'kernel/net/llc', 'kernel/net/802', 'kernel/net/9p',
  'kernel/net/sctp', 'kernel/fs/9p', 'kernel/fs/netfs', 'kernel/fs/fscache', 'kernel/fs/overlayfs', 'kernel/drivers/virtio',
  'kernel/drivers/net/dummy.ko', 'kernel/drivers/net/veth.ko', 'kernel/drivers/net/virtio_net.ko', 'kernel/drivers/net/net_failover.ko',
  'kernel/net/core', 'kernel/lib', 'kernel/crypto', 'kernel/arch/x86/crypto',
];

export interface GuestImage {
  package: string;
  version: string;
  kernel: string;
  initrd: string;
}

function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, encoding: 'buffer', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/**
 * The kernels the harness knows, by the short name tests and scripts use, as the Debian 12 meta package that
 * depends on the newest build of each: 6.1 is Debian 12's default (and Amazon Linux 2023's series), 6.12 the newer
 * one Debian 12 also carries. (This machine's own kernel is the third of the matrix: the host suites run on it.)
 */
export const KNOWN_KERNELS: Readonly<Record<string, string>> = { '6.1': 'linux-image-amd64', '6.12': 'linux-image-6.12-amd64' };

/**
 * The kernel package for `name`: a known short name ("6.1", "6.12"), a package name, or by default
 * SVCPLANE_VM_KERNEL, else Debian 12's default (6.1). A meta package is resolved to the versioned one it depends on.
 */
export function kernelPackage(name = process.env.SVCPLANE_VM_KERNEL || '6.1'): string {
  const meta = KNOWN_KERNELS[name] ?? name;
  if (!/^linux-image-(amd64|[\d.]+-amd64)$/.test(meta)) return meta;
  const deps = run('apt-cache', ['depends', meta]);
  const m = /Depends: (linux-image-[\w.+-]+)/.exec(deps);
  if (!m) throw new Error(`cannot tell which kernel ${meta} depends on:\n${deps}`);
  return m[1];
}

/** Fetches and unpacks the kernel, builds the initramfs; cached. */
export function prepareGuest(pkg = kernelPackage()): GuestImage {
  const dir = path.join(CACHE, pkg);
  const root = path.join(dir, 'root');
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(path.join(root, 'boot'))) {
    const dl = path.join(dir, 'download');
    fs.rmSync(dl, { recursive: true, force: true });
    fs.mkdirSync(dl);
    run('apt-get', ['download', pkg], { cwd: dl });
    const deb = fs.readdirSync(dl).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} gave no .deb`);
    fs.rmSync(root, { recursive: true, force: true });
    run('dpkg-deb', ['-x', path.join(dl, deb), root]);
    fs.rmSync(dl, { recursive: true, force: true });
  }
  const version = fs.readdirSync(path.join(root, 'lib', 'modules'))[0];
  const kernel = path.join(root, 'boot', `vmlinuz-${version}`);
  if (!fs.existsSync(path.join(root, 'lib', 'modules', version, 'modules.dep'))) run('depmod', ['-b', root, version]);

  // The initramfs, rebuilt when what goes into it changes.
  const busybox = '/bin/busybox';
  if (!fs.existsSync(busybox)) throw new Error('busybox-static is not installed (scripts/setup.sh installs it)');
  const stamp = crypto.createHash('sha256').update(fs.readFileSync(INIT)).update(GUEST_MODULES.join(',')).update(MODULE_DIRS.join(',')).update(INITRAMFS_LAYOUT).digest('hex').slice(0, 16);
  const initrd = path.join(dir, `initrd-${stamp}.gz`);
  if (!fs.existsSync(initrd)) {
    const tree = path.join(dir, 'initramfs');
    fs.rmSync(tree, { recursive: true, force: true });
    for (const d of ['bin', 'sbin', 'proc', 'sys', 'dev', 'etc', 'tmp', 'run']) fs.mkdirSync(path.join(tree, d), { recursive: true });
    fs.copyFileSync(busybox, path.join(tree, 'bin', 'busybox'));
    fs.chmodSync(path.join(tree, 'bin', 'busybox'), 0o755);
    fs.copyFileSync(INIT, path.join(tree, 'init'));
    fs.chmodSync(path.join(tree, 'init'), 0o755);
    fs.writeFileSync(path.join(tree, 'modules.load'), GUEST_MODULES.join('\n') + '\n');
    const modSrc = path.join(root, 'lib', 'modules', version);
    const modDst = path.join(tree, 'lib', 'modules', version);
    fs.mkdirSync(modDst, { recursive: true });
    for (const f of fs.readdirSync(modSrc)) if (f.startsWith('modules.')) fs.copyFileSync(path.join(modSrc, f), path.join(modDst, f));
    for (const entry of MODULE_DIRS) {
      // A single module may be packaged compressed (Debian's 6.12 ships veth.ko.xz, 6.1 veth.ko).
      const d = ['', '.xz', '.zst', '.gz'].map((ext) => entry + (entry.endsWith('.ko') ? ext : '')).find((x) => fs.existsSync(path.join(modSrc, x)));
      if (!d) continue;
      fs.mkdirSync(path.dirname(path.join(modDst, d)), { recursive: true });
      fs.cpSync(path.join(modSrc, d), path.join(modDst, d), { recursive: true });
    }
    const files = run('find', ['.', '-print'], { cwd: tree });
    const cpio = spawnSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: tree, input: files, maxBuffer: 1 << 30 });
    if (cpio.status !== 0) throw new Error(`cpio: ${cpio.stderr.toString()}`);
    const gz = spawnSync('gzip', ['-1'], { input: cpio.stdout, maxBuffer: 1 << 30 });
    if (gz.status !== 0) throw new Error(`gzip: ${gz.stderr.toString()}`);
    for (const old of fs.readdirSync(dir).filter((f) => f.startsWith('initrd-'))) fs.rmSync(path.join(dir, old));
    fs.writeFileSync(initrd, gz.stdout);
    fs.rmSync(tree, { recursive: true, force: true });
  }
  return { package: pkg, version, kernel, initrd };
}

export interface GuestRunOptions {
  image?: GuestImage;
  /** Working directory in the guest (a host path; default this repository). */
  cwd?: string;
  /**
   * Guest memory, MiB (default 3072: the test suites run two files at once, each with its node processes, and the
   * guest's writable root is a tmpfs in this memory; qemu takes host memory only as the guest touches it).
   */
  memoryMiB?: number;
  /** Kill the guest after this long (default 20 min). */
  timeoutMs?: number;
  /** Stream the guest's console here as it comes (default: nowhere). */
  onOutput?: (chunk: string) => void;
  env?: Record<string, string>;
}

export interface GuestRunResult {
  code: number;
  /** The console output, without the kernel's boot noise before the command started. */
  output: string;
  seconds: number;
}

const EXIT_MARKER = /@@SVCPLANE-EXIT=(\d+)@@/;

/** Boots the guest, runs `command` (a shell command line) in it, returns its exit code and output. */
export async function runInGuest(command: string, opts: GuestRunOptions = {}): Promise<GuestRunResult> {
  const image = opts.image ?? prepareGuest();
  const id = `${process.pid}-${Date.now()}-${crypto.randomBytes(3).toString('hex')}`;
  const runDir = path.join(CACHE, 'runs', id);
  fs.mkdirSync(runDir, { recursive: true });
  const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', CI: process.env.CI ?? '', SVCPLANE_IN_GUEST: '1', ...opts.env };
  const exportLines = Object.entries(env).map(([k, v]) => `export ${k}='${v.replace(/'/g, `'\\''`)}'`).join('\n');
  fs.writeFileSync(path.join(runDir, 'cmd.sh'), `${exportLines}\necho @@SVCPLANE-START@@\n${command}\n`);
  fs.writeFileSync(path.join(runDir, 'cwd'), opts.cwd ?? REPO);
  const t0 = Date.now();
  const args = [
    '-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', '2', '-m', String(opts.memoryMiB ?? 3072),
    '-kernel', image.kernel, '-initrd', image.initrd,
    '-append', `console=ttyS0 quiet loglevel=3 panic=-1 svcplane.run=${id}`,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio', '-monitor', 'none',
  ];
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      let err = '';
      q.stdout.setEncoding('utf8').on('data', (c: string) => {
        text += c;
        opts.onOutput?.(c);
      });
      q.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      const timer = setTimeout(() => q.kill('SIGKILL'), opts.timeoutMs ?? 20 * 60_000);
      q.on('error', reject);
      q.on('exit', (code, sig) => {
        clearTimeout(timer);
        if (!EXIT_MARKER.test(text)) reject(new Error(`the guest ended without an exit marker (qemu ${sig ?? code}${err ? `: ${err.trim()}` : ''}); console:\n${text.slice(-4000)}`));
        else resolve(text);
      });
    });
    const clean = out.replace(/\r\n/g, '\n');
    const start = clean.indexOf('@@SVCPLANE-START@@\n');
    const m = EXIT_MARKER.exec(clean)!;
    return { code: Number(m[1]), output: clean.slice(start >= 0 ? start + 19 : 0, m.index), seconds: (Date.now() - t0) / 1000 };
  } finally {
    fs.rmSync(runDir, { recursive: true, force: true });
  }
}
