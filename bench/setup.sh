#!/usr/bin/env bash
# Creates bench/.venv with Azure's official Python SDK for the SDK-flow comparator of byokd-bench.
# Run once before `cargo bench --bench suite`. Needs PyPI; the benchmark itself needs no network.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$here/.venv/bin/python" -c "import azure.identity, azure.keyvault.keys, cryptography; print('SDK comparator ready:', azure.keyvault.keys.__version__ if hasattr(azure.keyvault.keys, '__version__') else 'ok')"
