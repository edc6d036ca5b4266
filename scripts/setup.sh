#!/usr/bin/env bash
# Idempotent set-up shared by `npm test`, `npm run demo` and the benchmarks: installs what is missing on a
# fresh Debian 12 machine (as root), then builds the addon and the TypeScript. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Prerequisites it cannot install itself, checked first so nothing is half-installed: a Debian-like system, root
# for apt-get (only when something is missing), and Node.js >= 20.19 (Debian 12's nodejs is 18).
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || {
  echo "setup: needs a Debian-like system (Debian 12 or newer, Ubuntu 22.04 or newer): apt-get and dpkg-query not found" >&2; exit 1; }
node_ok=$(node -e 'const [a, b] = process.versions.node.split(".").map(Number); console.log(a > 20 || (a === 20 && b >= 19) ? "yes" : process.versions.node)' 2>/dev/null || echo "none")
if [ "$node_ok" != yes ]; then
  echo "setup: needs Node.js >= 20.19 with npm (found: $node_ok). Debian 12's nodejs package is 18; install Node 20 or 22" >&2
  echo "       from https://nodejs.org, https://github.com/nodesource/distributions or nvm, then run this again." >&2
  exit 1
fi

# Build-time: libmnl/libnftnl/libbpf headers for the addon, clang for its BPF programs (native/bpf/). Test/bench peers and verifiers: nft, iptables, ip,
# conntrack. The product itself never runs any of these tools.
# The IPVS guest harness (scripts/lib/vm.ts): qemu, busybox-static for its initramfs, kmod (depmod), cpio; ipvsadm is
# the IPVS peer and independent reader inside the guest.
APT_PACKAGES=(build-essential python3 pkg-config libmnl-dev libnftnl-dev nftables iptables iproute2 conntrack util-linux
  qemu-system-x86 busybox-static kmod cpio ipvsadm openssl clang llvm libbpf-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then echo "setup: need root to apt-get install ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool, the tests' independent linter of /metrics (`promtool check metrics`): Debian's prometheus package holds
# it; only that one binary is taken from the .deb (installing the package would also set up a Prometheus server).
PROMTOOL=/var/cache/svcplane/promtool
if [ ! -x "$PROMTOOL" ] && [ "$(id -u)" = 0 ]; then
  echo "setup: fetching promtool (Debian's prometheus package)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool) \
    && mkdir -p "$(dirname "$PROMTOOL")" && mv "$tmp/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$tmp"
fi

# npm ci only when the lock file changed since the last install. (package.json pins rollup through "overrides":
# this machine's npm registry lacks some platform packages of newer rollup releases, and npm ci refuses a lock
# file without every optional platform package.)
stamp=node_modules/.svcplane-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# Addon: rebuild when a native source is newer than the built module.
addon=build/Release/svcplane_native.node
if [ ! -f "$addon" ] || [ -n "$(find native binding.gyp -newer "$addon" -print -quit)" ]; then
  echo "setup: building native addon" >&2
  npx --no-install node-gyp rebuild --loglevel=warn >/dev/null
fi

# The benchmarks' C data-plane probe (scripts/lib/netns-tools/connlat.c): measures the kernel's path, not a runtime's.
probe=build/tools/connlat
if [ ! -x "$probe" ] || [ scripts/lib/netns-tools/connlat.c -nt "$probe" ]; then
  mkdir -p build/tools && gcc -O2 -Wall -o "$probe" scripts/lib/netns-tools/connlat.c
fi

# TypeScript: incremental build of src/, scripts/, bench/.
npx --no-install tsc -p tsconfig.json

# The commit `svcplane version` reports (the image passes it as a build argument: it has no .git).
commit=$(git rev-parse HEAD 2>/dev/null || echo "${SVCPLANE_COMMIT:-unknown}")
info="{\"commit\":\"$commit\"}"
[ "$(cat dist/src/build-info.json 2>/dev/null)" = "$info" ] || echo "$info" > dist/src/build-info.json
