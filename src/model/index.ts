// Public API of the proxy model: pure functions from Kubernetes objects to ServicePorts.
export * from './types';
export {
  parseIP,
  isValidIP,
  ipFamily,
  canonicalIP,
  ipToBytes,
  bytesToIp,
  compareIPBytes,
  parseCIDR,
  cidrToString,
  cidrContains,
  type ParsedIP,
  type CIDR,
} from './ip';
export {
  servicePortsOf,
  servicePortKey,
  serviceKeyOf,
  DEFAULT_CLIENT_IP_TIMEOUT,
  MAX_CLIENT_IP_TIMEOUT,
  type ServicePortSpec,
  type ServicePortsResult,
} from './service';
export {
  endpointsOf,
  endpointsOfParsed,
  parseEndpointSlice,
  SERVICE_NAME_LABEL,
  type EndpointsResult,
  type ParsedSlice,
  type SlicePort,
  type SliceEndpoint,
} from './endpoints';
export { buildProxyModel, buildServicePorts, sliceServiceKey } from './build';
