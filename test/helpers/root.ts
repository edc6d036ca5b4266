// Tests that need root (netns, nftables) skip outside root with the reason printed; under CI=true a skip is a
// failure, so CI can never go green without having run them.
import { execFileSync } from 'node:child_process';

export const isRoot = process.getuid?.() === 0;

export function requireRoot(what: string): boolean {
  if (isRoot) return true;
  const reason = `${what}: needs root (network namespaces, nftables)`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI=true makes this skip a failure`);
  console.warn(`SKIP ${reason}`);
  return false;
}

let counter = 0;

/** A fresh, empty network namespace (lo up); returns its name and file; remove() deletes it. */
export function makeNetns(tag: string): { name: string; path: string; remove(): void } {
  const name = `svpt${process.pid}${tag}${counter++}`.slice(0, 40);
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return {
    name,
    path: `/run/netns/${name}`,
    remove() {
      try {
        execFileSync('ip', ['netns', 'del', name]);
      } catch {
        /* already gone */
      }
    },
  };
}

/** Runs a command inside a namespace and returns stdout (throws with stderr on failure). */
export function inNetns(ns: string, argv: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', maxBuffer: 512 << 20 });
}
