// What `svcplane version` (and --version) prints: the package version, the commit it was built from
// (dist/src/build-info.json, written by scripts/setup.sh or the image build) and the libraries the addon links.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface VersionInfo {
  version: string;
  commit: string;
  libnftnl: string;
  libmnl: string;
  node: string;
}

export function versionInfo(): VersionInfo {
  // dist/src/version.js and src/version.ts (under vitest) both sit two levels below the repository root.
  const root = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  let commit = 'unknown';
  try {
    commit = (JSON.parse(fs.readFileSync(path.join(root, 'dist', 'src', 'build-info.json'), 'utf8')) as { commit: string }).commit;
  } catch {
    /* not built by setup.sh or the image */
  }
  let libraries = { libnftnl: 'unknown (addon not built)', libmnl: 'unknown (addon not built)' };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    libraries = (require('./native') as typeof import('./native')).native().libraries;
  } catch {
    /* the addon is missing: say so rather than fail */
  }
  return { version: pkg.version, commit, ...libraries, node: process.versions.node };
}

export function formatVersion(v: VersionInfo): string {
  return `svcplane ${v.version} (commit ${v.commit}; libnftnl ${v.libnftnl}, libmnl ${v.libmnl}; node ${v.node})`;
}
