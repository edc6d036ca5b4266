// The JSON `svcplane bench --output json` prints: one schema, versioned by `schema` (a change that removes or
// renames a field gets a new version; new fields may be added within one). BENCH_SCHEMA is its JSON Schema
// (draft 2020-12), printed by `svcplane bench --schema` and checked against every run in the tests.
import type { ChangeKind } from './churn';
import type { BenchMode } from './options';

export const SCHEMA_ID = 'svcplane.io/bench/v1';

export interface Latency {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface BenchCase {
  mode: BenchMode;
  services: number;
  endpointsPerService: number;
  /** Why the case did not run (e.g. this kernel has no IPVS); the figures below are then absent. */
  skipped?: string;
  fullSync?: {
    seconds: number;
    /** Where the time went, as the sync reports it (build, dump, diff, encode, kernel; socketLB for ebpf), seconds. */
    phases: Record<string, number>;
    /** The nftables batch of the same sync, replayed into an empty namespace: the kernel's share, nothing computed. */
    kernelFloorSeconds: number | null;
    /** ebpf: the socket-LB maps' same entries written with one raw batch per map, and how many. */
    socketLBFloorSeconds?: number;
    socketLBEntries?: number;
    /**
     * ipvs: the sync's IPVS and rtnetlink writes (link, routes, virtual and real servers) replayed as sent into an
     * empty namespace; null when the kernel refused the replay (a --netns whose link indexes differ).
     */
    ipvsFloorSeconds?: number | null;
    /** Which write the kernel refused in the replay, when it did. */
    ipvsFloorRefused?: string;
    operations: number;
    bytes: number;
    netlinkMessages: number;
  };
  churn?: {
    ratePerSecond: number;
    seconds: number;
    changes: number;
    /** Partial syncs: changes that arrive while one runs are batched into the next, as the agent's sync loop does. */
    syncs: number;
    /** From a change's arrival to the end of the sync that programmed it. */
    latency: Latency;
    byKind: Partial<Record<ChangeKind, number>>;
    perChange: { operations: number; bytes: number; netlinkMessages: number };
  };
  /** CPU time of this process (user + system) over the case, and its largest RSS. */
  cpuSeconds?: number;
  rssBytes?: number;
}

/** A kube-proxy-shaped peer loading the same Services into an empty namespace (--peers). */
export interface PeerCase {
  services: number;
  /**
   * As run: "nft -f" (kube-proxy's nftables mode), "iptables-restore" (its iptables mode; the jump rules first,
   * untimed), "ipvsadm --restore" (its IPVS mode's virtual and real servers only; with --mode ipvs or all).
   */
  tool: string;
  seconds: number | null;
  error?: string;
  /** Stopped at the time limit: the ratio is a lower bound. */
  timedOut?: true;
}

export interface BenchReport {
  schema: typeof SCHEMA_ID;
  date: string;
  machine: { kernel: string; cpus: number };
  /** The throwaway namespace, or the --netns file. */
  netns: string;
  options: { modes: BenchMode[]; services: number[]; endpoints: number; churnPerSecond: number; durationSeconds: number; /** The unrecorded churn before the recorded one (--warmup). */ warmupSeconds?: number; peers: boolean };
  cases: BenchCase[];
  peers?: PeerCase[];
}

const num = { type: 'number', minimum: 0 };
const latency = { type: 'object', required: ['p50Ms', 'p99Ms', 'maxMs'], additionalProperties: false, properties: { p50Ms: num, p99Ms: num, maxMs: num } };
const mode = { enum: ['nftables', 'ebpf', 'ipvs'] };

export const BENCH_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: `https://${SCHEMA_ID}`,
  title: 'svcplane bench results',
  type: 'object',
  required: ['schema', 'date', 'machine', 'netns', 'options', 'cases'],
  additionalProperties: false,
  properties: {
    schema: { const: SCHEMA_ID },
    date: { type: 'string' },
    machine: { type: 'object', required: ['kernel', 'cpus'], additionalProperties: false, properties: { kernel: { type: 'string' }, cpus: { type: 'integer', minimum: 1 } } },
    netns: { type: 'string' },
    options: {
      type: 'object', required: ['modes', 'services', 'endpoints', 'churnPerSecond', 'durationSeconds', 'peers'], additionalProperties: false,
      properties: { peers: { type: 'boolean' }, modes: { type: 'array', items: mode, minItems: 1 }, services: { type: 'array', items: { type: 'integer', minimum: 1 }, minItems: 1 }, endpoints: { type: 'integer', minimum: 1 }, churnPerSecond: { type: 'number', exclusiveMinimum: 0 }, durationSeconds: { type: 'number', exclusiveMinimum: 0 }, warmupSeconds: { type: 'number', minimum: 0 } },
    },
    cases: {
      type: 'array',
      items: {
        type: 'object', required: ['mode', 'services', 'endpointsPerService'], additionalProperties: false,
        properties: {
          mode, services: { type: 'integer', minimum: 1 }, endpointsPerService: { type: 'integer', minimum: 1 }, skipped: { type: 'string' },
          fullSync: {
            type: 'object', required: ['seconds', 'phases', 'kernelFloorSeconds', 'operations', 'bytes', 'netlinkMessages'], additionalProperties: false,
            properties: { seconds: num, phases: { type: 'object', additionalProperties: num }, kernelFloorSeconds: { anyOf: [num, { type: 'null' }] }, socketLBFloorSeconds: num, socketLBEntries: { type: 'integer', minimum: 0 }, ipvsFloorSeconds: { anyOf: [num, { type: 'null' }] }, ipvsFloorRefused: { type: 'string' }, operations: { type: 'integer', minimum: 0 }, bytes: { type: 'integer', minimum: 0 }, netlinkMessages: { type: 'integer', minimum: 0 } },
          },
          churn: {
            type: 'object', required: ['ratePerSecond', 'seconds', 'changes', 'syncs', 'latency', 'byKind', 'perChange'], additionalProperties: false,
            properties: {
              ratePerSecond: num, seconds: num, changes: { type: 'integer', minimum: 0 }, syncs: { type: 'integer', minimum: 0 }, latency,
              byKind: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 }, propertyNames: { enum: ['endpoint added', 'endpoint terminating', 'endpoint removed', 'Service removed', 'Service added'] } },
              perChange: { type: 'object', required: ['operations', 'bytes', 'netlinkMessages'], additionalProperties: false, properties: { operations: num, bytes: num, netlinkMessages: num } },
            },
          },
          cpuSeconds: num, rssBytes: { type: 'integer', minimum: 0 },
        },
      },
    },
    peers: {
      type: 'array',
      items: {
        type: 'object', required: ['services', 'tool', 'seconds'], additionalProperties: false,
        properties: { services: { type: 'integer', minimum: 1 }, tool: { enum: ['nft -f', 'iptables-restore', 'ipvsadm --restore'] }, seconds: { anyOf: [num, { type: 'null' }] }, error: { type: 'string' }, timedOut: { const: true } },
      },
    },
  },
} as const;
