// What the ebpf dataplane needs from the kernel, and the real thing: the socket-LB object (native EbpfObject) with
// its maps pinned under <root>/v<layout>/ and its links under <root>/links/ (links outlive a layout change: a new
// object is swapped into them with BPF_LINK_UPDATE). The fake (fake.ts) holds the same contract.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../../native/index';
import type { EbpfLinkInfo, EbpfMapInfo, EbpfMapOpResult, EbpfMapStep, EbpfPinnedLink } from '../../../native/index';
import { LAYOUT_VERSION } from './layout';
import { EbpfPreflightError, effectiveCapabilities, explainLoadFailure, missingCapabilities, needsNoRetvalObject } from './preflight';

export type { EbpfLinkInfo, EbpfMapInfo, EbpfMapOpResult, EbpfMapStep, EbpfPinnedLink };

export interface EbpfKernel {
  /** Checks what load and attach need, changing nothing; throws naming what is missing. */
  preflight(): void;
  /** The object file load() loaded (the fallback without bpf_set_retval on kernels before 5.18). */
  readonly loadedObject?: string;
  /** Loads the programs, adopting or pinning the maps. */
  load(): Promise<EbpfMapInfo[]>;
  /** Attaches (or adopts) one link per program on the cgroup. */
  attach(): Promise<EbpfLinkInfo[]>;
  update(map: string, keys: Buffer, values: Buffer): Promise<EbpfMapOpResult>;
  delete(map: string, keys: Buffer): Promise<EbpfMapOpResult>;
  dump(map: string): Promise<EbpfMapOpResult & { keys: Buffer; values: Buffer }>;
  /** The steps in order, in one trip to the kernel's side; the first failure stops the rest and names its step. */
  apply(steps: EbpfMapStep[]): Promise<{ steps: number; syscalls: number; micros: number }>;
  maps(): EbpfMapInfo[];
  /** The pinned links, read from bpffs (none when nothing is pinned). */
  links(): EbpfPinnedLink[];
  /** Whether anything is pinned under the root. */
  pinned(): boolean;
  /** Detaches the links and removes every pin under the root. Returns the links detached. */
  detach(): number;
  close(): void;
}

/** Up to this many bytes of keys (about 500 elements of the biggest key), apply() runs on the JS thread. */
const SYNC_APPLY_KEY_BYTES = 16 * 1024;

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
    if (!fs.existsSync(this.paths.object)) throw new EbpfPreflightError(`the ebpf mode's programs are not built: ${this.paths.object} is missing (npm run setup builds them; clang and libbpf-dev needed)`);
    const caps = missingCapabilities(effectiveCapabilities());
    if (caps) throw new EbpfPreflightError(caps);
    if (typeof this.paths.cgroup !== 'string') {
      try {
        this.paths.cgroup = this.paths.cgroup();
      } catch (e) {
        throw new EbpfPreflightError((e as Error).message);
      }
    }
  }

  /** Which object was loaded: the full one, or the one without bpf_set_retval (Linux 5.8-5.17: refusals are EPERM). */
  loadedObject = '';

  /**
   * Loads the object; a refusal leaves nothing behind (libbpf pins the maps before the verifier sees the programs,
   * so maps it pinned are removed again when the directory was not there before).
   */
  async load(): Promise<EbpfMapInfo[]> {
    const existed = fs.existsSync(this.paths.root);
    const attempt = (object: string) => this.obj.load(object, this.mapDir).then((maps) => ((this.loadedObject = object), maps));
    try {
      try {
        return await attempt(this.paths.object);
      } catch (e) {
        if (!needsNoRetvalObject(e as Error)) throw e;
        return await attempt(this.paths.object.replace(/sock\.bpf\.o$/, 'sock-noretval.bpf.o'));
      }
    } catch (e) {
      if (!existed && fs.existsSync(this.paths.root)) native().ebpfDetach(this.linkDir, this.paths.root);
      throw explainLoadFailure(e as Error) ?? e;
    }
  }

  attach(): Promise<EbpfLinkInfo[]> {
    const cgroup = typeof this.paths.cgroup === 'string' ? this.paths.cgroup : this.paths.cgroup();
    return this.obj.attach(cgroup, this.linkDir).catch((e: Error) => {
      throw explainLoadFailure(e) ?? e;
    });
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

  /**
   * A sync's few map writes (a partial sync: an endpoint or a Service) run on the JS thread: bpf() takes ~10 µs for
   * them, and a hop to the thread pool and back took 50 µs at p50 and milliseconds at p99 on these 2-vCPU VMs (the
   * worker's vCPU must be woken), which made the endpoint-change p99 there. Bigger batches (full syncs: up to
   * hundreds of thousands of elements) go off the JS thread as the addon's other blocking work does.
   */
  apply(steps: EbpfMapStep[]): Promise<{ steps: number; syscalls: number; micros: number }> {
    const bytes = steps.reduce((n, s) => n + s.keys.length, 0);
    if (bytes <= SYNC_APPLY_KEY_BYTES) {
      try {
        const r = this.obj.applySync(steps);
        if (r) return Promise.resolve(r);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.obj.apply(steps);
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
