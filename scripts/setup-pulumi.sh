#!/usr/bin/env bash
# Makes a working Pulumi CLI + Node language host available, building them from Go modules when none is usable.
#
#   ~/.pulumi/versions/<v>/bin/{pulumi, pulumi-language-nodejs, pulumi-resource-pulumi-nodejs}
#
# That directory is the cache read by Automation API (PulumiCommand.get({root})) and by the npm `pulumi` launcher.
# Idempotent: when the cache holds a CLI that prints its version, nothing is rebuilt.
# On a machine with internet the official installer is simpler: curl -fsSL https://get.pulumi.com | sh
#
# Why two wrapper modules: the CLI comes from github.com/pulumi/pulumi/pkg/v3 (tagged, served by the module proxy).
# The Node language host lives in its own untagged module since sdk v3.69, and the proxy here serves no pseudo-version
# of it; up to sdk v3.68.0 the same host was part of the sdk/v3 module itself, which the proxy does serve. A 3.68 host
# speaks the language-runtime protocol the current CLI uses (Run, GetRequiredPlugins, RunPlugin, InstallDependencies).
set -euo pipefail

PULUMI_VERSION="${GUARDIAN_PULUMI_VERSION:-3.274.1}"
HOST_SDK_VERSION="${GUARDIAN_PULUMI_HOST_SDK_VERSION:-3.68.0}"
ROOT="${PULUMI_HOME:-$HOME/.pulumi}/versions/${PULUMI_VERSION}"
BIN="$ROOT/bin"
log() { echo "setup-pulumi: $*" >&2; }

write_shim() {
  # The dynamic-provider host: runs @pulumi/pulumi's dynamic provider, resolved from the program directory.
  cat > "$BIN/pulumi-resource-pulumi-nodejs" <<'SHIM'
#!/bin/sh
script=$(node -e 'process.stdout.write(require.resolve("@pulumi/pulumi/cmd/dynamic-provider", { paths: [process.cwd()] }))') || exit 1
exec node "$script" "$@"
SHIM
  chmod +x "$BIN/pulumi-resource-pulumi-nodejs"
}

usable() { [ -x "$1" ] && "$1" version 2>/dev/null | grep -q "^v\?[0-9]"; }

mkdir -p "$BIN"
if usable "$BIN/pulumi" && [ -x "$BIN/pulumi-language-nodejs" ]; then
  [ -x "$BIN/pulumi-resource-pulumi-nodejs" ] || write_shim
  log "using cached $("$BIN/pulumi" version) in $BIN"
  echo "$ROOT"; exit 0
fi

# An official CLI already installed (PATH or ~/.pulumi/bin) is adopted: copied (not symlinked: the CLI looks for its
# bundled plugins beside its resolved path) together with its language host.
existing="$(command -v pulumi 2>/dev/null || true)"; [ -n "$existing" ] || existing="$HOME/.pulumi/bin/pulumi"
if [ -z "${GUARDIAN_FORCE_BUILD:-}" ] && usable "$existing" && [ -x "$(dirname "$(readlink -f "$existing")")/pulumi-language-nodejs" ]; then
  d="$(dirname "$(readlink -f "$existing")")"
  v="$("$existing" version | sed 's/^v//')"
  ROOT="${PULUMI_HOME:-$HOME/.pulumi}/versions/$v"; BIN="$ROOT/bin"; mkdir -p "$BIN"
  cp -f "$d/pulumi" "$d/pulumi-language-nodejs" "$BIN/"
  write_shim
  log "adopted existing CLI v$v from $d"
  echo "$ROOT"; exit 0
fi

command -v go >/dev/null || { log "no usable Pulumi CLI and no Go toolchain: install the official CLI (https://www.pulumi.com/docs/install/)"; exit 1; }
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod
LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${PULUMI_VERSION}"

if ! usable "$BIN/pulumi"; then
  log "building pulumi v${PULUMI_VERSION} from github.com/pulumi/pulumi/pkg/v3 (several minutes on 2 cores)"
  mkdir -p "$WORK/cli" && cd "$WORK/cli"
  cat > go.mod <<MOD
module guardian.local/pulumi-cli
go 1.26
require (
	github.com/pulumi/pulumi/pkg/v3 v${PULUMI_VERSION}
	github.com/pulumi/pulumi/sdk/v3 v${PULUMI_VERSION}
)
MOD
  # Carry over pkg/v3's replace lines that point at other modules (not its ../sdk local path).
  modfile="$(go env GOMODCACHE)/cache/download/github.com/pulumi/pulumi/pkg/v3/@v/v${PULUMI_VERSION}.mod"
  go mod download github.com/pulumi/pulumi/pkg/v3@v${PULUMI_VERSION}
  grep -E '^replace [^ ]+ => [^.]' "$modfile" >> go.mod || true
  echo 'package main; import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"' > tools.go
  sed -i 's/^package main;/\/\/go:build tools\npackage main;/' tools.go
  go mod tidy >/dev/null 2>&1 || go get github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v${PULUMI_VERSION}
  go build -trimpath -tags osusergo,grpcnotrace -ldflags "$LDFLAGS" -o "$BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  mv "$BIN/pulumi.tmp" "$BIN/pulumi"
fi

if [ ! -x "$BIN/pulumi-language-nodejs" ]; then
  log "building pulumi-language-nodejs from github.com/pulumi/pulumi/sdk/v3@v${HOST_SDK_VERSION}"
  mkdir -p "$WORK/host" && cd "$WORK/host"
  cat > go.mod <<MOD
module guardian.local/pulumi-language-nodejs
go 1.26
require github.com/pulumi/pulumi/sdk/v3 v${HOST_SDK_VERSION}
MOD
  echo 'package main; import _ "github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs"' > tools.go
  sed -i 's/^package main;/\/\/go:build tools\npackage main;/' tools.go
  go mod tidy >/dev/null 2>&1 || true
  go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${HOST_SDK_VERSION}" \
    -o "$BIN/pulumi-language-nodejs.tmp" github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs
  mv "$BIN/pulumi-language-nodejs.tmp" "$BIN/pulumi-language-nodejs"
fi
write_shim
log "ready: $("$BIN/pulumi" version) in $BIN"
echo "$ROOT"
