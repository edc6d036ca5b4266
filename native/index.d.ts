// Hand-written types of the addon (native/addon.cc). The record stream format is described in
// native/nft_records.h and implemented on the TypeScript side in src/native/recordStream.ts.

export interface CommitResult {
  /** Records sent (one netlink message each, between BEGIN and END). */
  operations: number;
  messages: number;
  bytes: number;
  /** Time inside sendmsg(): nf_tables validates and commits the batch synchronously there. */
  kernelMicros: number;
  /** Parsing the records and encoding them with libnftnl (worker thread), before sending. */
  encodeMicros?: number;
  totalMicros: number;
}

export interface BatchErrorInfo {
  /** Record index, -1 for the batch as a whole. */
  index: number;
  errno: number;
  code: string;
  object: string;
  kernelMessage: string;
  /** The top-level attribute type the kernel blamed (extended ack NLMSGERR_ATTR_OFFS), when it named one. */
  attribute?: number;
  /** For a rule: the expression the kernel blamed, by position in the rule and name ("lookup"). */
  expression?: { index: number; name: string };
}

/** What the kernel said of each record of a batch it never committed (check()). */
export interface CheckResult {
  errors: BatchErrorInfo[];
  /** Some refusals were dropped (receive buffer overflow): treat every record as suspect. */
  lostReports: boolean;
}

/** The Error a rejected commit rejects with (besides message). */
export interface NftCommitError extends Error {
  code: string;
  errno: number;
  index: number;
  object: string;
  kernelMessage?: string;
  /** The first refused record's blamed expression (see BatchErrorInfo). */
  expression?: { index: number; name: string };
  errors: BatchErrorInfo[];
}

export interface DumpResult {
  exists: boolean;
  generation: number;
  /** Record stream (action NEW): table, chains, sets, elements, rules. Empty when !exists. */
  records: Buffer;
}

export declare class NftSocket {
  /**
   * netns: a network namespace file (/run/netns/NAME) the socket is opened in; default: the caller's.
   * replyTimeoutMs: how long an exchange waits for the kernel's next reply before rejecting with ETIMEDOUT (10 s).
   */
  constructor(options?: { netns?: string; replyTimeoutMs?: number });
  commit(records: Buffer): Promise<CommitResult>;
  /** The same batch without its END: the kernel checks every record, reports refusals and commits nothing. */
  check(records: Buffer): Promise<CheckResult>;
  dump(family: number, table: string): Promise<DumpResult>;
  generation(): Promise<number>;
  /** Closes the socket once the exchange in progress (if any) ends; exchanges still queued reject with EBADF. */
  close(): void;
}

export interface NetlinkRequestResult {
  /** 0, or the positive errno the kernel answered this request with. */
  errno: number;
  code?: string;
  /** The extended-ack message, when the kernel gave one. */
  kernelMessage?: string;
  /** Data messages answering the request (dump parts, echoes), each a whole netlink message. */
  replies: Buffer[];
}

export interface TransactResult {
  results: NetlinkRequestResult[];
  /** sendmsg calls (requests go out many per call). */
  sends: number;
  bytes: number;
  /** Time in send/receive. */
  kernelMicros: number;
}

export interface PackedTransactResult {
  /** Requests sent. */
  count: number;
  failures: Array<{ index: number; errno: number; code: string; kernelMessage?: string }>;
  /** Data replies of a request (dump parts, echoes), concatenated whole messages. */
  replies: Array<{ index: number; data: Buffer }>;
  sends: number;
  bytes: number;
  kernelMicros: number;
}

/**
 * A netlink socket for pipelined request/ack exchanges. Requests are whole netlink messages built in TypeScript
 * (src/netlink); nlmsg_seq and nlmsg_pid are assigned here and every reply is matched to its request.
 */
export declare class NetlinkTransceiver {
  /** replyTimeoutMs: as NftSocket's; a request left unanswered that long rejects with ETIMEDOUT naming it. */
  constructor(options: { bus: 'generic' | 'route' | 'netfilter'; netns?: string; replyTimeoutMs?: number });
  /** Rejects only when the exchange itself fails (send/receive); a refused request is reported in its result. */
  transact(requests: Buffer[]): Promise<TransactResult>;
  /**
   * The same for many requests at once: `messages` holds consecutive netlink messages (NetlinkWriter's output).
   * Only refused requests and requests with replies are reported, by index. ackLastOnly: no request answers with
   * data (new/set/delete commands), so only the last of each page asks for an ack; refusals still come back.
   */
  transactPacked(messages: Buffer, options?: { ackLastOnly?: boolean }): Promise<PackedTransactResult>;
  /** As NftSocket's close(). */
  close(): void;
}

/** Versions of the libraries the addon was built against. */
export declare const libraries: { libnftnl: string; libmnl: string; libbpf: string };

/**
 * Reads (no value) or writes a net.* sysctl ("net.ipv4.vs.conntrack" or "net/ipv4/vs/conntrack") of the network
 * namespace at `netns` (a file such as /run/netns/NAME; default: the caller's). Rejects with code/errno.
 */
export declare function netSysctl(name: string, netns?: string, value?: string): Promise<string | undefined>;

/**
 * A listening unix stream socket bound to the abstract name `name` in the network namespace at `netns` (default: the
 * caller's); returns its fd. Abstract names are per network namespace and vanish with the socket's last fd, i.e.
 * with its process. Throws with code EADDRINUSE when the name is held.
 */
export declare function listenAbstract(name: string, netns?: string): number;

/**
 * Connects to the holder of an abstract name: the connected fd and the holder's pid and uid (SO_PEERCRED, as this
 * process's PID namespace sees them: pid 0 when it cannot); fd -1 when the holder's accept queue is full; null when
 * nobody holds the name.
 */
export declare function connectAbstract(name: string, netns?: string): { fd: number; pid: number; uid: number } | null;

/**
 * A new, empty network namespace (loopback down), held by the returned fd alone: close the fd and it goes; this
 * process's end, however it ends, closes it too. Open it elsewhere as `/proc/<pid>/fd/<fd>` (the `netns` option of
 * the sockets here). Needs CAP_SYS_ADMIN; throws with code/errno.
 */
export declare function newNetns(): number;

/** A map of the loaded socket-LB object, as the kernel describes it. */
export interface EbpfMapInfo {
  name: string;
  id: number;
  /** enum bpf_map_type */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** Bytes the kernel charges for the map (/proc/self/fdinfo memlock; an estimate before Linux 6.3). */
  memlock: number;
}

export interface EbpfLinkInfo {
  program: string;
  linkId: number;
  progId: number;
  /** An existing pinned link on the same cgroup now runs the new program (BPF_LINK_UPDATE): no moment without one. */
  adopted: boolean;
}

/** One step of EbpfObject.apply(). */
export type EbpfMapStep = { op: 'update'; map: string; keys: Buffer; values: Buffer } | { op: 'delete'; map: string; keys: Buffer };

export interface EbpfMapOpResult {
  /** Elements written, deleted or read. */
  count: number;
  /** bpf() calls made (batches: 8192 elements each; one per element on kernels without batch operations). */
  syscalls: number;
  /** Time inside those calls. */
  micros: number;
}

/**
 * The socket-LB BPF object (native/bpf/sock.c, built as build/Release/sock.bpf.o) loaded through libbpf. Each method
 * runs off the JS thread, one at a time; errors carry code/errno and a message naming the step, the map and the key
 * (a verifier refusal: the tail of its log).
 */
export declare class EbpfObject {
  constructor();
  /** Loads the object, reusing the maps pinned in mapDir and pinning the missing ones (bpffs mounted if absent). */
  load(objectPath: string, mapDir: string): Promise<EbpfMapInfo[]>;
  /** Attaches every program to the cgroup v2 directory by a link pinned in linkDir (an existing one is updated). */
  attach(cgroupPath: string, linkDir: string): Promise<EbpfLinkInfo[]>;
  /** Writes packed keys and values (sizes: the map's); batched. */
  update(map: string, keys: Buffer, values: Buffer): Promise<EbpfMapOpResult>;
  /** Deletes packed keys; absent ones are not an error. */
  delete(map: string, keys: Buffer): Promise<EbpfMapOpResult>;
  /** Every element, packed. */
  dump(map: string): Promise<EbpfMapOpResult & { keys: Buffer; values: Buffer }>;
  /**
   * The steps in order in one trip off the JS thread (a sync's writes and deletes over several maps). The first
   * failing step stops the rest; its error names the map, the key and "(step i of n)".
   */
  apply(steps: EbpfMapStep[]): Promise<{ steps: number; syscalls: number; micros: number }>;
  /**
   * apply() on the JS thread, for a few elements (a bpf() map write does not sleep: tens of microseconds, less than a
   * hop to the thread pool). undefined, with nothing done, when a worker holds the object at that moment.
   */
  applySync(steps: EbpfMapStep[]): { steps: number; syscalls: number; micros: number } | undefined;
  /** The maps, with the kernel's current memory figure. */
  maps(): EbpfMapInfo[];
  /** Closes the object's descriptors; pinned maps and links stay. */
  close(): void;
}

export interface EbpfPinnedLink {
  pin: string;
  linkId: number;
  progId: number;
  /** enum bpf_attach_type */
  attachType: number;
  cgroupId: bigint;
}

/** The links pinned in a directory, read without loading anything (none when it is absent). */
export declare function ebpfPinnedLinks(linkDir: string): EbpfPinnedLink[];
/** Detaches and unpins every link in linkDir, then unpins and removes everything under root. Returns links detached. */
export declare function ebpfDetach(linkDir: string, root: string): number;
/** The kernel's id of a cgroup v2 directory (its inode number). */
export declare function cgroupId(path: string): bigint;
