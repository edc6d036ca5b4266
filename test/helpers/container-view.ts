// The DaemonSet's container view, emulated: the real CLI run as nobody holding only the given capabilities
// (setpriv: ambient, inheritable and bounding sets), optionally with /proc/sys read-only as container runtimes mount
// it for a Pod (runc: a read-only bind of itself), inside a network namespace.
//
// nobody must be able to read the CLI wherever the repository was cloned, including under root's 0700 home. So the
// process runs in a private mount namespace (unshare) in which the repository is bind-mounted at `mnt`, a fresh 0755
// directory under /tmp, and runs the CLI from there. That changes which path it reads files through, nothing else.
// Asynchronous (execFile), as every CLI run in the tests: a worker blocked in a synchronous child reads no IPC
// (test/helpers/cli.ts says why that matters).
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { REPO, SVCPLANE } from './cli';

export async function asNobody(ns: string, mnt: string, caps: string[], args: string[], opts: { readOnlyProcSys?: boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const capList = ['-all', ...caps.map((c) => `+${c}`)].join(',');
  // The bind mount lives only in the unshared namespace (private propagation) and goes when the process does.
  // readOnlyProcSys: /proc/sys as container runtimes mount it for a Pod (runc: a read-only bind of itself).
  const roSys = opts.readOnlyProcSys ? 'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && ' : '';
  return new Promise((resolve) => execFile('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', `mount --bind "$1" "$2" && ${roSys}shift 2 && exec "$@"`, 'sh',
    REPO, mnt,
    'ip', 'netns', 'exec', ns, 'setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups',
    `--inh-caps=${capList}`, ...(caps.length ? [`--ambient-caps=${capList}`] : []), `--bounding-set=${capList}`, '--',
    process.execPath, path.join(mnt, path.relative(REPO, SVCPLANE)), ...args], { encoding: 'utf8', timeout: 180_000 }, (err, stdout, stderr) => {
    resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
  }));
}
