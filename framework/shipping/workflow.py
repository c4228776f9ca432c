"""``task=init_ci``: a GitHub Actions workflow for a repository of configs and experiments.

Jobs, in order:

- ``test``: install, lint (ruff), compose and check the config (``--cfg job`` and
  ``task=build_serve_config`` need nothing but the config), run the repository's tests;
- ``changes``: did this push touch ``conf/`` or ``experiments/``?
- ``pipeline`` (on such a push to the default branch): ``task=pipeline`` submitted as a
  Ray Job to the cluster named in the secrets; its exit status is the job's;
- ``image``: build the container image (the Dockerfile beside it) and push it;
- ``deploy``: write the ``RayService`` with that image and apply it.

Promotion is not a step: the pipeline aliases a challenger, and the running application's
rollout policy ramps it up, promotes it or rolls it back.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from framework.config import RootConfig

WORKFLOW = Path(".github") / "workflows" / "framework.yml"

TEMPLATE = """\
# CI/CD for a project of the framework, written by `python -m framework task=init_ci`.
#
# Repository secrets it reads:
#   RAY_ADDRESS        the cluster's Ray dashboard (Jobs API), e.g. https://ray.example.com
#   RAY_AUTH_TOKEN     the cluster's token when it runs with RAY_AUTH_MODE=token (optional)
#   KUBECONFIG_DATA    a kubeconfig allowed to apply the RayService in its namespace
#   FRAMEWORK_STORE    the registry's path on the cluster's shared storage
#                      (default @@STORE@@; the RayService mounts the same volume)
#
# Promotion is not a step here: task=pipeline aliases a challenger after infra validation,
# and the running application's rollout policy ramps it up, promotes or rolls it back.
name: framework

on:
  push:
    branches: [main]
  pull_request:
  workflow_dispatch:

permissions:
  contents: read

concurrency:
  group: framework-${{ github.ref }}
  cancel-in-progress: false

env:
  PYTHON_VERSION: "@@PYTHON@@"
  IMAGE: ghcr.io/${{ github.repository }}

jobs:
  test:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: ${{ env.PYTHON_VERSION }}
      - name: Install
        run: |
          python -m venv .venv
          .venv/bin/pip install -r requirements.txt
      - name: Lint
        run: |
          .venv/bin/pip install ruff
          .venv/bin/ruff check .
      - name: Check the config
        run: .venv/bin/python -m framework --cfg job > composed.yaml
      - name: Test
        run: |
          if [ -d tests ]; then .venv/bin/python -m pytest; else echo "no tests/ folder"; fi

  changes:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    outputs:
      models: ${{ steps.diff.outputs.models }}
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - id: diff
        name: Did conf/ or experiments/ change?
        env:
          BEFORE: ${{ github.event.before }}
        run: |
          if [ -z "$BEFORE" ] || ! git cat-file -e "$BEFORE" 2>/dev/null; then
            BEFORE="$(git rev-parse HEAD~1 2>/dev/null || true)"
          fi
          changed="$(git diff --name-only "$BEFORE" HEAD -- conf experiments | head -n 1)"
          if [ -n "$changed" ]; then
            echo "models=true" >> "$GITHUB_OUTPUT"
          else
            echo "models=false" >> "$GITHUB_OUTPUT"
          fi

  pipeline:
    needs: [test, changes]
    if: github.event_name == 'push' && needs.changes.outputs.models == 'true'
    runs-on: ubuntu-latest
    timeout-minutes: 120
    environment: production
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: ${{ env.PYTHON_VERSION }}
      - name: Install
        run: |
          python -m venv .venv
          .venv/bin/pip install -r requirements.txt
      - name: task=pipeline as a Ray Job on the cluster
        env:
          RAY_ADDRESS: ${{ secrets.RAY_ADDRESS }}
          RAY_AUTH_TOKEN: ${{ secrets.RAY_AUTH_TOKEN }}
          FRAMEWORK_STORE: ${{ secrets.FRAMEWORK_STORE }}
        run: |
          if [ -n "$RAY_AUTH_TOKEN" ]; then export RAY_AUTH_MODE=token; fi
          .venv/bin/python -m framework task=pipeline ray.submit=true \\
            "store.path=${FRAMEWORK_STORE:-@@STORE@@}"

  image:
    needs: [test]
    if: github.event_name == 'push'
    runs-on: ubuntu-latest
    timeout-minutes: 60
    permissions:
      contents: read
      packages: write
    steps:
      - uses: actions/checkout@v4
      - uses: docker/setup-buildx-action@v3
      - uses: docker/login-action@v3
        with:
          registry: ghcr.io
          username: ${{ github.actor }}
          password: ${{ secrets.GITHUB_TOKEN }}
      - uses: docker/build-push-action@v6
        with:
          context: .
          push: true
          tags: ${{ env.IMAGE }}:${{ github.sha }}

  deploy:
    needs: [image, pipeline]
    if: >-
      always() && github.event_name == 'push' && needs.image.result == 'success' &&
      needs.pipeline.result != 'failure' && needs.pipeline.result != 'cancelled'
    runs-on: ubuntu-latest
    timeout-minutes: 30
    environment: production
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: ${{ env.PYTHON_VERSION }}
      - name: Install
        run: |
          python -m venv .venv
          .venv/bin/pip install -r requirements.txt
      - name: Write the RayService
        env:
          FRAMEWORK_STORE: ${{ secrets.FRAMEWORK_STORE }}
        run: |
          .venv/bin/python -m framework task=build_serve_config target=kuberay \\
            "kuberay.image=${IMAGE}:${GITHUB_SHA}" "store.path=${FRAMEWORK_STORE:-@@STORE@@}"
      - name: Apply it
        env:
          KUBECONFIG_DATA: ${{ secrets.KUBECONFIG_DATA }}
        run: |
          umask 077
          printf '%s' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"
          export KUBECONFIG="$RUNNER_TEMP/kubeconfig"
          kubectl apply -f "serve_configs/@@MANIFEST@@"
          kubectl get rayservice -o wide
"""


def render_workflow(cfg: RootConfig) -> str:
    """The workflow for the composed config (its registry path and application name)."""
    import sys

    from framework.serving.kuberay import manifest_name

    store = cfg.store.path if os.path.isabs(cfg.store.path) else "/mnt/registry"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (
        TEMPLATE.replace("@@STORE@@", store)
        .replace("@@PYTHON@@", python)
        .replace("@@MANIFEST@@", manifest_name(cfg))
    )


def write_workflow(cfg: RootConfig, root: Path) -> Path:
    """Write ``.github/workflows/framework.yml`` under ``root`` (atomically); return it."""
    path = root / WORKFLOW
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".framework-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(render_workflow(cfg))
    os.replace(tmp, path)
    return path
