#!/usr/bin/env bash
# Builds the real Pulumi engine the infra tests run: the Pulumi CLI and the Kubernetes resource
# provider, both from the Go module proxy (no other download site is reachable from CI), into a
# cache OUTSIDE the repository so that every clone reuses them:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kafka-tasks/engine/
#     pulumi-<cli version>/bin/pulumi
#     kubernetes-<provider module version>/bin/pulumi-resource-kubernetes
#     helm-<version>/bin/helm  (the Helm the provider embeds; renders charts for the hook check)
#     home-<cli>-<provider>/   PULUMI_HOME with the provider installed as plugin <sdk version>
#
# Versions and paths come from infra/engine/versions.py, passed in as environment variables by
# `python -m infra.engine build` (what `make engine` runs). A finished build leaves a stamp file;
# later runs only check the stamps (seconds). Cold on 2 cores: see README (CLI ~10 min,
# provider ~12 min, helm ~2 min). Go builds run under `nice -n 10` and print one line per 100 packages.
set -euo pipefail

: "${PULUMI_CLI_VERSION:?}" "${PROVIDER_MODULE_VERSION:?}" "${PROVIDER_PLUGIN_VERSION:?}"
: "${HELM_VERSION:?}" "${HELM_DIR:?}"
: "${ENGINE_CACHE:?}" "${PULUMI_CLI_DIR:?}" "${PROVIDER_DIR:?}" "${PULUMI_HOME_DIR:?}"

command -v go >/dev/null || { echo "engine: the Go toolchain (go) is required; it builds the engine from the Go module proxy" >&2; exit 1; }
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"
export GOTOOLCHAIN=local
export GONOSUMDB= GOPRIVATE=
start=$(date +%s)

say() { printf 'engine: [%4ds] %s\n' "$(( $(date +%s) - start ))" "$*" >&2; }

# `go build -v` names each package as it compiles it: turn that into a progress line.
progress() {
  awk -v what="$1" '{ n++; if (n % 100 == 0) { printf "engine:        %s: %d packages compiled\n", what, n; fflush() } }
                     END { printf "engine:        %s: %d packages compiled\n", what, n }' >&2
}

build_cli() {
  local bin="$PULUMI_CLI_DIR/bin/pulumi" src="$PULUMI_CLI_DIR/src"
  if [ -f "$PULUMI_CLI_DIR/.built" ] && [ -x "$bin" ]; then
    say "Pulumi CLI $PULUMI_CLI_VERSION: cached ($bin)"
    return
  fi
  say "Pulumi CLI $PULUMI_CLI_VERSION: building from the Go module proxy (cold: about 10 minutes)"
  rm -rf "$src" && mkdir -p "$src" "$PULUMI_CLI_DIR/bin"
  # A wrapper module pins pkg/v3 and sdk/v3 to one version: pkg/v3's own replace of sdk/v3
  # (a path in its repository) does not apply when it is a dependency.
  (
    cd "$src"
    go mod init kafka-tasks.local/engine/pulumi-cli >/dev/null 2>&1
    go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$PULUMI_CLI_VERSION" \
      "github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION" 2>&1 | tail -n 3 >&2
    nice -n 10 go build -v -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_CLI_VERSION" \
      -o "$bin.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi 2>&1 | progress "pulumi CLI"
  )
  mv "$bin.tmp" "$bin"
  touch "$PULUMI_CLI_DIR/.built"
  say "Pulumi CLI: built ($("$bin" version))"
}

build_provider() {
  local bin="$PROVIDER_DIR/bin/pulumi-resource-kubernetes" src="$PROVIDER_DIR/src"
  if [ -f "$PROVIDER_DIR/.built" ] && [ -x "$bin" ]; then
    say "Kubernetes provider $PROVIDER_MODULE_VERSION: cached ($bin)"
    return
  fi
  say "Kubernetes provider $PROVIDER_MODULE_VERSION: building from the Go module proxy (cold: about 15 minutes)"
  local module="github.com/pulumi/pulumi-kubernetes/provider/v4"
  local dir
  dir=$(go mod download -json "$module@$PROVIDER_MODULE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$src" && mkdir -p "$PROVIDER_DIR/bin"
  # The module cache is read-only, and the command embeds a schema that generate.go writes
  # next to it: build from a writable copy. Its replace of sdk/v4 points into the provider's
  # repository, which the module proxy does not carry; the released sdk/v4 it requires is used.
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  (
    cd "$src"
    go mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4
    go mod download 2>&1 | tail -n 3 >&2
    say "Kubernetes provider: generate.go (embeds the schema; cold: about 4 minutes)"
    (cd cmd/pulumi-resource-kubernetes && VERSION="$PROVIDER_MODULE_VERSION" nice -n 10 go run -v generate.go 2>&1 | progress "provider generate.go")
    say "Kubernetes provider: compiling"
    nice -n 10 go build -v -trimpath \
      -ldflags "-s -w -X $module/pkg/version.Version=$PROVIDER_MODULE_VERSION" \
      -o "$bin.tmp" ./cmd/pulumi-resource-kubernetes 2>&1 | progress "kubernetes provider"
  )
  mv "$bin.tmp" "$bin"
  touch "$PROVIDER_DIR/.built"
  say "Kubernetes provider: built ($(du -h "$bin" | cut -f1))"
}

build_helm() {
  local bin="$HELM_DIR/bin/helm" src="$HELM_DIR/src"
  if [ -f "$HELM_DIR/.built" ] && [ -x "$bin" ]; then
    say "helm $HELM_VERSION: cached ($bin)"
    return
  fi
  say "helm $HELM_VERSION: building from the Go module proxy (mostly cached by the provider build)"
  rm -rf "$src" && mkdir -p "$src" "$HELM_DIR/bin"
  (
    cd "$src"
    go mod init kafka-tasks.local/engine/helm >/dev/null 2>&1
    go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" 2>&1 | tail -n 3 >&2
    nice -n 10 go build -v -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      -o "$bin.tmp" helm.sh/helm/v3/cmd/helm 2>&1 | progress "helm"
  )
  mv "$bin.tmp" "$bin"
  touch "$HELM_DIR/.built"
  say "helm: built ($("$bin" version --short))"
}

install_plugin() {
  local stamp="$PULUMI_HOME_DIR/.installed-$PROVIDER_PLUGIN_VERSION"
  if [ -f "$stamp" ]; then
    say "plugin kubernetes $PROVIDER_PLUGIN_VERSION: installed in $PULUMI_HOME_DIR"
    return
  fi
  mkdir -p "$PULUMI_HOME_DIR"
  # The Python SDK asks the engine for the plugin version it was generated with; the only
  # provider build the module proxy serves is older, so it is installed under that version
  # (the engine warns about the mismatch and runs it; README says which build this is).
  PULUMI_HOME="$PULUMI_HOME_DIR" "$PULUMI_CLI_DIR/bin/pulumi" plugin install resource kubernetes \
    "$PROVIDER_PLUGIN_VERSION" --file "$PROVIDER_DIR/bin/pulumi-resource-kubernetes" --reinstall >&2
  touch "$stamp"
  say "plugin kubernetes $PROVIDER_PLUGIN_VERSION: installed in $PULUMI_HOME_DIR"
}

mkdir -p "$ENGINE_CACHE"
# One build at a time per cache: a second `make engine` waits instead of racing the first.
exec 9>"$ENGINE_CACHE/.lock"
flock 9
build_cli
build_provider
build_helm
install_plugin
say "engine ready"
