#!/usr/bin/env bash
# Validates deploy/ (scripts/validate_deploy.py says what is checked), installing what it needs into
# .cache/deploy-site: kubernetes-validate (the Kubernetes API schemas) and helm-python-sdk (Helm's Go
# SDK as a shared library: lint and template without a helm binary), both from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=$PWD/.cache/deploy-site
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import helm_python, kubernetes_validate, yaml" 2>/dev/null; then
    python3 -m pip install --quiet --target "$SITE" "kubernetes-validate==1.37.0" "helm-python-sdk==0.2.2" "PyYAML>=6"
fi
python3 scripts/validate_deploy.py
