// The errnos the IPVS dataplane tolerates or explains (numeric: the addon keeps the kernel's errno as a number).
export const ESRCH = 3;
export const ENOENT = 2;
export const EEXIST = 17;
export const EADDRNOTAVAIL = 99;
