#!/usr/bin/env bash
# The README's first command: setup (deps, Pulumi CLI, Postgres) and the demo preview -> up -> report -> rollback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node -r ts-node/register/transpile-only scripts/demo.ts "$@"
