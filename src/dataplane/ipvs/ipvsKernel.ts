// What the IPVS dataplane asks of the kernel: IPVS over generic netlink, svcplane0's link, addresses and routes over
// rtnetlink, net.* sysctls. IpvsClient (client.ts) is the real one; fake.ts answers the same requests from memory,
// held to the same contract suite (test/contract/ipvs-client.contract.ts) on a real kernel in the test guest.
import type { IpvsClient } from './client';

export type IpvsKernel = Pick<IpvsClient,
  'familyId' | 'listServices' | 'listDests' | 'applyIpvs' | 'applyRoute' | 'allRoutes' | 'link' | 'allAddresses' | 'sysctl' | 'close' | 'error'>;
