// Which of two Service ports keeps an address:port both claim (one's externalIP equal to another's ClusterIP, two
// LoadBalancers given one ingress IP, ...). The API server prevents most such clashes, not all (externalIPs and
// load-balancer status are free-form), and kube-proxy lets whichever it processes last win, which changes from
// sync to sync. svcplane decides by one stable rule, in partial and full syncs alike, in every dataplane: the
// older Service keeps it (creationTimestamp), then the smaller name (namespace/name:port) when they are as old, or
// when a hand-written manifest has no timestamp (those come after every Service that has one). The loser is
// reported as a problem naming the winner.
import type { ModelProblem, ServicePort, ServicePortKey } from './types';

/** Negative when `a` keeps a contested address:port against `b`. A total order: never 0 for distinct ports. */
export function claimPrecedence(a: Pick<ServicePort, 'createdAt' | 'key'>, b: Pick<ServicePort, 'createdAt' | 'key'>): number {
  const ta = a.createdAt ?? '';
  const tb = b.createdAt ?? '';
  if (ta !== tb) {
    if (!ta) return 1;
    if (!tb) return -1;
    return ta < tb ? -1 : 1;
  }
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** The order key of the same rule, as one string (for ledgers that compare values): "" timestamps sort last. */
export function claimRank(sp: Pick<ServicePort, 'createdAt' | 'key'>): string {
  return `${sp.createdAt || '~'}\u0000${sp.key}`;
}

/** The problem reported for the Service port that lost `what` (an address:port, in words) to `winner`. */
export function claimConflictProblem(what: string, loser: ServicePortKey, winner: ServicePortKey): ModelProblem {
  return {
    object: `Service ${loser}`,
    message: `${what} is also claimed by Service ${winner}, which keeps it (the older Service keeps an address, then the first by name); this one is not programmed there`,
  };
}
