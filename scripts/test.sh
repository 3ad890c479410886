#!/usr/bin/env bash
# npm test: setup (idempotent, quiet), the type check, lint and format (Biome, biome.json), then every vitest test. Arguments are passed to vitest
# (`npm test -- test/seed.test.ts`). The exit code is vitest's; a failed setup or type check stops before it.
set -euo pipefail
cd "$(dirname "$0")/.."

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
exec npx vitest run "$@"
