#!/usr/bin/env bash
# `npm test`: set-up, then the host suites on this machine's kernel, then the kernel matrix (Debian's kernels under
# qemu: SVCPLANE_TEST_KERNELS, default 6.1; `npm run test:kernels` runs 6.1 and 6.12). Both parts always run; the
# exit code is non-zero if either failed. Arguments go to both vitest runs (e.g. a name filter: -t traffic).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
start=$(date +%s)
npx --no-install vitest run "$@"
host=$?
npx --no-install vitest run --config test/vm/vitest.config.ts "$@"
guest=$?
echo "svcplane tests: host suites $([ $host = 0 ] && echo passed || echo FAILED), kernel matrix (${SVCPLANE_TEST_KERNELS:-6.1}) $([ $guest = 0 ] && echo passed || echo FAILED), $(( $(date +%s) - start )) s"
[ $host = 0 ] && [ $guest = 0 ]
