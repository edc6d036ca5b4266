// What the ebpf dataplane needs from the kernel, and the real thing: the socket-LB object (native EbpfObject) with
// its maps pinned under <root>/v<layout>/ and its links under <root>/links/ (links outlive a layout change: a new
// object is swapped into them with BPF_LINK_UPDATE). The fake (fake.ts) holds the same contract.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../../native/index';
import type { EbpfLinkInfo, EbpfMapInfo, EbpfMapOpResult, EbpfPinnedLink } from '../../../native/index';
import { LAYOUT_VERSION } from './layout';

export type { EbpfLinkInfo, EbpfMapInfo, EbpfMapOpResult, EbpfPinnedLink };

export interface EbpfKernel {
  /** Checks what load and attach need, changing nothing; throws naming what is missing. */
  preflight(): void;
  /** Loads the programs, adopting or pinning the maps. */
  load(): Promise<EbpfMapInfo[]>;
  /** Attaches (or adopts) one link per program on the cgroup. */
  attach(): Promise<EbpfLinkInfo[]>;
  update(map: string, keys: Buffer, values: Buffer): Promise<EbpfMapOpResult>;
  delete(map: string, keys: Buffer): Promise<EbpfMapOpResult>;
  dump(map: string): Promise<EbpfMapOpResult & { keys: Buffer; values: Buffer }>;
  maps(): EbpfMapInfo[];
  /** The pinned links, read from bpffs (none when nothing is pinned). */
  links(): EbpfPinnedLink[];
  /** Whether anything is pinned under the root. */
  pinned(): boolean;
  /** Detaches the links and removes every pin under the root. Returns the links detached. */
  detach(): number;
  close(): void;
}

export interface EbpfPaths {
  /** The BPF object file (build/Release/sock.bpf.o). */
  object: string;
  /** bpffs directory svcplane owns: /sys/fs/bpf/svcplane (--bpf-root). */
  root: string;
  /** cgroup v2 directory the programs attach to (--cgroup-root; default: the cgroup2 mount), looked up at attach. */
  cgroup: string | (() => string);
}

/** The directory of the addon's build, where node-gyp puts the BPF objects too. */
export function defaultObjectPath(): string {
  const root = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../../..' : '../../..');
  return path.join(root, 'build', 'Release', 'sock.bpf.o');
}

export class LibbpfKernel implements EbpfKernel {
  private obj = new (native().EbpfObject)();

  constructor(readonly paths: EbpfPaths) {}

  get mapDir(): string {
    return path.join(this.paths.root, `v${LAYOUT_VERSION}`);
  }

  get linkDir(): string {
    return path.join(this.paths.root, 'links');
  }

  preflight(): void {
    if (!fs.existsSync(this.paths.object)) throw new Error(`the ebpf mode's programs are not built: ${this.paths.object} is missing (npm run setup builds them; clang and libbpf-dev needed)`);
    if (typeof this.paths.cgroup !== 'string') this.paths.cgroup = this.paths.cgroup();
  }

  load(): Promise<EbpfMapInfo[]> {
    return this.obj.load(this.paths.object, this.mapDir);
  }

  attach(): Promise<EbpfLinkInfo[]> {
    const cgroup = typeof this.paths.cgroup === 'string' ? this.paths.cgroup : this.paths.cgroup();
    return this.obj.attach(cgroup, this.linkDir);
  }

  update(map: string, keys: Buffer, values: Buffer): Promise<EbpfMapOpResult> {
    return this.obj.update(map, keys, values);
  }

  delete(map: string, keys: Buffer): Promise<EbpfMapOpResult> {
    return this.obj.delete(map, keys);
  }

  dump(map: string): Promise<EbpfMapOpResult & { keys: Buffer; values: Buffer }> {
    return this.obj.dump(map);
  }

  maps(): EbpfMapInfo[] {
    return this.obj.maps();
  }

  links(): EbpfPinnedLink[] {
    return fs.existsSync(this.linkDir) ? native().ebpfPinnedLinks(this.linkDir) : [];
  }

  pinned(): boolean {
    return fs.existsSync(this.paths.root);
  }

  detach(): number {
    if (!fs.existsSync(this.paths.root)) return 0;
    return native().ebpfDetach(this.linkDir, this.paths.root);
  }

  close(): void {
    this.obj.close();
  }
}
