// The small interface every dataplane (nftables, IPVS; eBPF next) implements. The sync layer and the CLI above it
// know only this.
import type { Explanation, FlowQuery } from './explain';
import type { ModelProblem, ServicePort, ServicePortKey } from '../model/types';
import type { ForeignChain } from './nftables/foreign';
import type { KernelReport } from './nftables/kernel';

export interface SyncResult {
  /** A full sync (everything compared with what the kernel holds) or a partial one (changed Service ports only). */
  full: boolean;
  /** Kernel operations sent in the one transaction (0: nothing differed, nothing sent). */
  operations: number;
  /** Operations by kind, e.g. { "add rule": 12, "add element(s)": 2 }. */
  summary: Record<string, number>;
  bytes: number;
  /** Time inside the kernel's batch processing (sendmsg), and the whole sync. */
  kernelMicros: number;
  totalMicros: number;
  /** Where the time went: building the wanted state, reading the kernel, diffing, encoding (libnftnl). */
  phases?: Record<string, number>;
  servicePorts: number;
  /** Problems found while programming (e.g. two Services claiming the same address:port). */
  problems: ModelProblem[];
  /** Stale UDP conntrack entries deleted after this sync, by IP family. */
  conntrackDeleted?: { 4: number; 6: number };
  /**
   * Things the sync found in the kernel that are not Services' objects, one sentence each: what it repaired in its
   * own tables (a dormant table, a base chain's policy or hook) and other tables' rules that may take Service traffic.
   */
  warnings?: string[];
}

/** Element changes of one Service port in a plan, by set. */
export interface ServicePlan {
  add: Record<string, number>;
  delete: Record<string, number>;
}

/** What a full sync would change (`sync --once --dry-run`), nothing applied. */
export interface SyncPlan {
  mode: string;
  /** Kernel operations the sync would send (0: nothing differs). */
  operations: number;
  summary: Record<string, number>;
  /** Element changes by Service port ("ns/name:port"; "(shared or unnamed)": a deleted element no Service names). */
  services: Record<string, ServicePlan>;
  /** Operations on the table itself (chains, rules, sets), in order. */
  table: string[];
  problems: ModelProblem[];
}

export interface StatusEndpoint {
  address: string;
  port: number;
  /** IPVS: the real server's weight (0 while it drains) and its connection counters. */
  weight?: number;
  activeConns?: number;
  inactiveConns?: number;
}

export interface StatusRow {
  family: 4 | 6;
  protocol: string;
  /** Address the Service answers on; "*" for NodePorts (every NodePort address of the node). */
  address: string;
  port: number;
  kind: 'ClusterIP' | 'External' | 'NodePort';
  /** "namespace/name:port" when it can be told from the kernel objects. */
  service: string;
  /** Empty with reject=true: the Service port has no endpoints and is refused. */
  endpoints: StatusEndpoint[];
  reject: boolean;
  /** Endpoints exist but none here under a Local traffic policy: new connections (from outside) are dropped. */
  drop?: boolean;
  /** 'Local': externalTrafficPolicy Local (endpoints: what clients from outside the node get; source kept). */
  policy?: 'Local';
  /** Why the endpoints are these (policy, topology, termination, weights), as the kernel's element comment says. */
  why?: string[];
  /** IPVS: the virtual service's scheduler, and its persistence timeout when sessionAffinity is ClientIP. */
  scheduler?: string;
  persistentSeconds?: number;
  /** ebpf: what the socket LB's maps do with a connection to it from this node (absent: left to the table). */
  socket?: 'translated' | 'refused';
}

export interface StatusReport {
  mode: string;
  present: boolean;
  rows: StatusRow[];
  /** The kernel's nf_tables constructs and the ruleset shape chosen for them. */
  kernel?: KernelReport;
  /**
   * What makes the rows above not what the kernel does, one sentence each: svcplane's table dormant, a base chain
   * missing, moved or with policy drop, another table's rule that may take the traffic first.
   */
  warnings?: string[];
  /** ebpf mode: the socket LB as the kernel holds it (links pinned, frontends in the map, map memory). */
  socketLB?: { links: number; frontends: number; mapBytes: number };
  /** Those other tables' base chains, in detail (nftables mode). */
  foreign?: ForeignChain[];
}

export interface Dataplane {
  readonly mode: string;
  /**
   * Probes what the kernel accepts and chooses the shape (once; syncFull does it too when nobody asked). Throws,
   * naming what is missing, when this mode cannot run on the kernel.
   */
  prepare?(): Promise<KernelReport>;
  /** Programs exactly this set of Service ports, comparing with what the kernel holds (adoption, repair). */
  syncFull(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncResult>;
  /** What syncFull would change, per Service port, changing nothing (a dataplane without it has no dry run). */
  plan?(servicePorts: Map<ServicePortKey, ServicePort>): Promise<SyncPlan>;
  /**
   * What the kernel does with each flow, read from what it holds (one reading for all of them): the Service port
   * matched, the endpoints a new connection can reach and why. Each dataplane answers from its own objects.
   */
  explain(flows: FlowQuery[]): Promise<Explanation[]>;
  /** Programs only these changes (undefined: the Service port is gone). Falls back to full when required. */
  syncPartial(changes: Map<ServicePortKey, ServicePort | undefined>): Promise<SyncResult>;
  /** Removes everything this dataplane programmed, and nothing else. */
  cleanup(): Promise<boolean>;
  /** What is programmed, read back from the kernel. */
  status(): Promise<StatusReport>;
  /**
   * Work due between syncs (IPVS: deleting drained real servers whose connections have ended). The sync loop
   * asks housekeepingDue() every few seconds and runs housekeeping() in its own turn, never beside a sync.
   */
  housekeepingDue?(): boolean;
  /** This node's zone changed (topology hints are read against it): the next sync must be full. */
  setNodeZone?(zone: string | undefined): void;
  /** The cluster's Service CIDRs changed (unallocated addresses in them are dropped): the next sync must be full. */
  setServiceCIDRs?(cidrs: string[]): void;
  housekeeping?(): Promise<void>;
  close(): void;
}
