// Where a bench programs: a throwaway network namespace of its own (native newNetns: held by one descriptor, so it
// goes with this process however the process ends, SIGKILL included), or a namespace the user names (--netns). For
// the ebpf mode also a cgroup and a bpffs directory of its own (the hooks must not touch the node's processes),
// removed on exit and on SIGINT/SIGTERM. Never the host's own rules: without --netns nothing outside the throwaway
// namespace, cgroup and bpffs directory is touched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../cli/args';
import { cgroup2MountOf } from '../dataplane/ebpf/cgroup';
import { NetlinkNftClient } from '../dataplane/nftables/client';
import { NFPROTO_IPV4, NFPROTO_IPV6 } from '../dataplane/nftables/netlink/constants';
import { TABLE_NAME } from '../dataplane/nftables/rules/names';
import { native } from '../native';

export interface BenchNode {
  /** The namespace file svcplane's sockets open. */
  netns: string;
  /** Whether the namespace is a throwaway one (no --netns). */
  throwaway: boolean;
  /** The ebpf mode's cgroup and bpffs directory (made on first use). */
  ebpfPlace(): { cgroup: string; bpfRoot: string };
  /** Removes what the bench made (the namespace goes with its descriptor). */
  close(): void;
}

export async function openBenchNode(netnsFlag: string | undefined): Promise<BenchNode> {
  if (!netnsFlag) return freshBenchNode();
  if (!fs.existsSync(netnsFlag)) throw new UsageError(`--netns ${netnsFlag}: no such file`);
  const held = await svcplaneTables(netnsFlag);
  if (held.length) throw new UsageError(`--netns ${netnsFlag} holds svcplane's table (${held.join(', ')}), which this bench did not make: a node's own? Give an empty namespace, or none (a throwaway one)`);
  return benchNodeAt(netnsFlag);
}

/** A node in a new empty namespace of its own, gone when the node is closed (or with the process). */
export function freshBenchNode(): BenchNode {
  const fd = native().newNetns();
  return benchNodeAt(`/proc/${process.pid}/fd/${fd}`, fd);
}

/** Runs `run` on a fresh node, closed afterwards: one sample of a repository benchmark. */
export async function inFreshNode<T>(run: (node: BenchNode) => Promise<T>): Promise<T> {
  const node = freshBenchNode();
  try {
    return await run(node);
  } finally {
    node.close();
  }
}

/** A node in the namespace file `netns` (a sandbox's node, a --netns file; `fd`: one this node holds and closes). */
export function benchNodeAt(netns: string, fd?: number): BenchNode {
  let place: { cgroup: string; bpfRoot: string } | undefined;
  const tag = `svcplane-bench-${process.pid}`;
  const node: BenchNode = {
    netns,
    throwaway: fd !== undefined,
    ebpfPlace() {
      if (!place) {
        const mount = cgroup2MountOf(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
        if (!mount) throw new Error('the ebpf mode needs cgroup v2, and none is mounted');
        place = { cgroup: path.join(mount, tag), bpfRoot: `/sys/fs/bpf/${tag}` };
        fs.mkdirSync(place.cgroup, { recursive: true });
      }
      return place;
    },
    close() {
      process.off('exit', node.close);
      if (place) {
        // The links and maps are unpinned by the mode's cleanup; what is left here is the empty directories.
        fs.rmSync(place.bpfRoot, { recursive: true, force: true });
        try {
          fs.rmdirSync(place.cgroup);
        } catch {
          /* gone, or still busy: nothing of ours runs in it */
        }
        place = undefined;
      }
      if (fd !== undefined) {
        fs.closeSync(fd);
        fd = undefined;
      }
    },
  };
  process.on('exit', node.close);
  return node;
}

/** The svcplane tables a namespace holds (svcplane's are ip and ip6). */
async function svcplaneTables(netns: string): Promise<string[]> {
  const client = new NetlinkNftClient({ netns });
  try {
    const found: string[] = [];
    for (const [family, name] of [[NFPROTO_IPV4, 'ip'], [NFPROTO_IPV6, 'ip6']] as const) {
      if (await client.dumpTable(family, TABLE_NAME)) found.push(`${name} ${TABLE_NAME}`);
    }
    return found;
  } finally {
    client.close();
  }
}

/** Runs `run` with a new empty namespace's file, removed (its descriptor closed) afterwards. */
export async function inFreshNetns<T>(run: (netns: string) => Promise<T>): Promise<T> {
  const fd = native().newNetns();
  try {
    return await run(`/proc/${process.pid}/fd/${fd}`);
  } finally {
    fs.closeSync(fd);
  }
}
