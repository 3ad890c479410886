#!/usr/bin/env bash
# Idempotent project setup (`npm run setup`; also the first step of `npm test`):
#   1. root dependencies: `npm ci` (`npm install` when there is no lockfile), only when node_modules is missing or
#      package-lock.json is newer than node_modules/.package-lock.json (the record npm writes at each install);
#   2. policies/ dependencies: `npm install` there, when policies/package.json declares any and policies/node_modules
#      is missing;
#   3. the Pulumi CLI and Node language host (scripts/setup-pulumi.sh, cached under ~/.pulumi/versions/<v>/bin);
#   4. PgBouncer (Debian's `pgbouncer`), which test/pooler.test.ts starts in front of the test server: installed with
#      apt-get when missing and we are root on a Debian-like machine; otherwise a note (the pooler test then fails,
#      saying so). Not started here: the test starts and stops its own.
# Quiet on success: stdout is only the line that puts the CLI on PATH, so `eval "$(bash scripts/setup.sh)"` works.
# On failure: which step failed, the command, and the last lines of its output; exit code 1.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "setup: $*" >&2; exit 1; }
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

# quietly <step> <command...>: runs the command with its output kept aside, shown only if it fails (its first lines,
# where npm states the error, and its last ones; npm's "Unknown user config" warnings left out).
quietly() {
  local step="$1"; shift
  if ! "$@" >"$LOG" 2>&1; then
    echo "setup: $step failed: $*" >&2
    grep -v 'npm warn Unknown user config' "$LOG" | awk '{ l[NR] = $0 } END {
      for (i = 1; i <= NR; i++) if (NR <= 30 || i <= 15 || i > NR - 10) print "  " l[i]; else if (i == 16) print "  ..." }' >&2
    exit 1
  fi
}

command -v node >/dev/null || fail "node is not on PATH (Node 20 or 22 is required)"
command -v npm >/dev/null || fail "npm is not on PATH"

# 1. Root dependencies.
if [ -f package-lock.json ]; then
  if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    quietly "installing dependencies" npm ci --no-audit --no-fund
  fi
elif [ ! -d node_modules ]; then
  quietly "installing dependencies (no package-lock.json)" npm install --no-audit --no-fund
fi

# 2. The policy pack's own dependencies.
if [ -f policies/package.json ] && [ ! -d policies/node_modules ]; then
  if node -e 'const p = require("./policies/package.json");
              process.exit(Object.keys({ ...p.dependencies, ...p.devDependencies }).length ? 0 : 1)'; then
    quietly "installing policies/ dependencies" npm install --prefix policies --no-audit --no-fund
  fi
fi

# 3. The Pulumi CLI (its "using cached" line is dropped; a first-time build says what it is doing).
root="$(bash scripts/setup-pulumi.sh 2> >(grep -v '^setup-pulumi: using cached' >&2 || true))" \
  || fail "the Pulumi CLI could not be set up (scripts/setup-pulumi.sh, see above)"
root="$(printf '%s\n' "$root" | tail -n 1)"
[ -x "$root/bin/pulumi" ] || fail "scripts/setup-pulumi.sh reported \"$root\" but $root/bin/pulumi is not there"

# 4. PgBouncer for the pooler test.
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    quietly "installing pgbouncer (apt-get update)" apt-get update -qq
    quietly "installing pgbouncer" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer
  else
    echo "setup: pgbouncer is not installed (Debian: sudo apt-get install pgbouncer); test/pooler.test.ts needs it" >&2
  fi
fi

bin="$root/bin"
case "$bin" in "$HOME"/*) bin="\$HOME${bin#"$HOME"}" ;; esac
echo "export PATH=\"$bin:\$PATH\""
