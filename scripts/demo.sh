#!/usr/bin/env bash
# The README's first command: setup (deps, Pulumi CLI, Postgres) and the demo preview -> up -> report -> rollback.
# Its options are scripts/demo.ts's (npm run demo -- --help). When the dependencies are installed, --help and a bad
# argument are answered before the setup runs; on a fresh clone the setup comes first (the parser needs ts-node).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d node_modules/ts-node ]; then
  GUARDIAN_DEMO_ARGS_ONLY=1 node -r ts-node/register/transpile-only scripts/demo.ts "$@"
  for a in "$@"; do
    case "$a" in -h | --help) exit 0 ;; esac
  done
fi
bash scripts/setup.sh
exec node -r ts-node/register/transpile-only scripts/demo.ts "$@"
