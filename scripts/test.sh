#!/usr/bin/env bash
# npm test / npm run test:full: setup (idempotent, quiet), the type check, lint and format (Biome, biome.json), then the
# tests of one tier (vitest.config.mts): `core` (npm test) or `full` (npm run test:full, .ci/run). Further arguments
# are passed to vitest (`npm run test:full -- test/seed.test.ts`). The exit code is vitest's; a failed setup or type
# check stops before it.
set -euo pipefail
cd "$(dirname "$0")/.."

tier="${1:-}"
case "$tier" in
  core) shift; tier_args=(--project core) ;;
  full) shift; tier_args=() ;;
  *) echo "usage: scripts/test.sh core|full [vitest arguments]" >&2; exit 2 ;;
esac

path_line="$(bash scripts/setup.sh)"
eval "$path_line" # the tests and the engine find the pulumi CLI the setup installed

if ! npx tsc --noEmit -p .; then
  echo "test: type check failed (npx tsc --noEmit -p .); tests not run" >&2
  exit 1
fi
if ! npx biome ci --diagnostic-level=error .; then
  echo "test: lint or format check failed (npx biome ci .; npm run format fixes the format); tests not run" >&2
  exit 1
fi
echo "test: tier $tier ($(date -u +%H:%M:%S) UTC)" >&2
exec npx vitest run "${tier_args[@]}" "$@"
