#!/usr/bin/env bash
# Runs kernel suites that drive the addon with the addon built under AddressSanitizer, and fails on any ASan report.
# Opt-in, for changes to native/ (as test/native/memcheck.sh, which runs valgrind on a smaller workload); root.
#   bash test/native/asan.sh [vitest files...]     default: the suites below
# The ASan build replaces build/Release for the run (node-gyp honours CXXFLAGS/LDFLAGS; binding.gyp is unchanged)
# and the plain build is put back at exit. node is not built with ASan, so the runtime is preloaded into every
# process the suites start but `ip` (iproute2's own strncpy of a buffer onto itself, in print_route, is reported
# and aborts it). Leak checking is off: node keeps much alive until exit by design.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/kernel/addon-safety.test.ts test/kernel/nft-native.test.ts test/kernel/netlink-packed.test.ts
  test/kernel/conntrack.test.ts test/kernel/nft-kernel.contract.test.ts test/kernel/nftables-kernel.test.ts
  test/kernel/capabilities.test.ts test/kernel/ipvs-preflight.test.ts test/kernel/nftables-cli.test.ts)
runtime=$(gcc -print-file-name=libasan.so)
[ -e "$runtime" ] || { echo "libasan not found (gcc -print-file-name=libasan.so)"; exit 1; }
work=$(mktemp -d)
trap 'npx --no-install node-gyp rebuild >/dev/null 2>&1 || echo "rebuilding the plain addon failed: run npm run build:native"; rm -rf "$work"' EXIT
CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" npx --no-install node-gyp rebuild >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log"; exit 1; }
ldd build/Release/svcplane_native.node | grep -q libasan || { echo "the addon was not built with ASan"; exit 1; }
mkdir "$work/bin"
cat >"$work/bin/ip" <<EOF
#!/bin/sh
# ip itself without the runtime; what \`ip netns exec\` runs (node among others) gets it back.
p=\$LD_PRELOAD
unset LD_PRELOAD
if [ "\$1" = netns ] && [ "\$2" = exec ]; then ns=\$3; shift 3; exec $(command -v ip) netns exec "\$ns" env LD_PRELOAD="\$p" "\$@"; fi
exec $(command -v ip) "\$@"
EOF
chmod +x "$work/bin/ip"
status=0
PATH="$work/bin:$PATH" LD_PRELOAD="$runtime" ASAN_OPTIONS="detect_leaks=0:log_path=$work/asan" \
  npx --no-install vitest run "${files[@]}" || status=$?
reports=("$work"/asan.*)
if [ -e "${reports[0]}" ]; then
  cat "${reports[@]}"
  echo "AddressSanitizer: ${#reports[@]} report(s)"
  exit 1
fi
echo "AddressSanitizer: no reports"
exit $status
