#!/usr/bin/env bash
# Runs test/native/memcheck.js under valgrind and fails on any invalid read/write or definite leak whose stack
# goes through the addon (svcplane_native / libnftnl / libmnl). Node's own allocations are not our business.
# Slow (a minute or two): run once per change to native/, not in every `npm test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)"; exit 1; }
log=$(mktemp)
valgrind --error-exitcode=0 --leak-check=full --show-leak-kinds=definite --num-callers=30 \
  node test/native/memcheck.js >"$log.out" 2>"$log" || true
cat "$log.out"
# The workload must have run to its end (valgrind's exit code is not its own).
grep -q 'memcheck workload done' "$log.out" || { echo "memcheck workload did not finish"; tail -20 "$log"; exit 1; }
# Keep the error/leak records whose stacks touch our code or the netlink libraries.
python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r'\n==\d+== \n', text)
ours = [b for b in blocks if re.search(r'(Invalid|uninitialised|definitely lost)', b) and re.search(r'svcplane_native|libnftnl|libmnl', b)]
for b in ours: print(b)
summary = [l for l in text.splitlines() if 'ERROR SUMMARY' in l or 'definitely lost' in l]
print('\n'.join(summary[-2:]))
print(f'addon-related valgrind records: {len(ours)}')
sys.exit(1 if ours else 0)
PY
