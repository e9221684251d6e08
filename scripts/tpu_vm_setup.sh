#!/usr/bin/env bash
# Set up s3ft-jax on every worker of a Cloud TPU VM (run from your workstation).
#
#   scripts/tpu_vm_setup.sh TPU_NAME ZONE [REPO_URL]
#
# Installs jax[tpu] and this package (with the TFDS extra) into ~/s3ft-venv on all workers.
# The package comes from REPO_URL (git clone, or pull when already cloned) when given, else
# from this checkout: its committed HEAD is copied to every worker (uncommitted changes are
# not; the script says so).
# Datasets: copy them to the same path on every worker (or a shared mount) and point
# S3FT_DATA_DIR there, or use hub names (--config.task.source=hf:openai/gsm8k:main).
set -euo pipefail
USAGE="usage: tpu_vm_setup.sh TPU_NAME ZONE [REPO_URL]  (without REPO_URL, this checkout is copied)"
TPU_NAME=${1:?$USAGE}
ZONE=${2:?$USAGE}
REPO=${3:-}

if [ -n "$REPO" ]; then
  FETCH="if [ -d ~/s3ft-jax/.git ]; then git -C ~/s3ft-jax pull -q; else git clone -q '$REPO' ~/s3ft-jax; fi"
else
  HERE=$(cd "$(dirname "$0")/.." && pwd)
  if ! git -C "$HERE" rev-parse --verify -q HEAD >/dev/null; then
    echo "tpu_vm_setup.sh: $HERE is not a git checkout with a commit: give REPO_URL" >&2
    exit 2
  fi
  if [ -n "$(git -C "$HERE" status --porcelain --untracked-files=no)" ]; then
    echo "tpu_vm_setup.sh: note: uncommitted changes in $HERE are not copied (only HEAD is)" >&2
  fi
  ARCHIVE=$(mktemp "${TMPDIR:-/tmp}/s3ft-jax.XXXXXX")
  trap 'rm -f "$ARCHIVE"' EXIT
  git -C "$HERE" archive --format=tar.gz -o "$ARCHIVE" HEAD
  gcloud compute tpus tpu-vm scp "$ARCHIVE" "$TPU_NAME":s3ft-jax.tar.gz --zone "$ZONE" --worker=all
  FETCH="rm -rf ~/s3ft-jax && mkdir ~/s3ft-jax && tar -xzf ~/s3ft-jax.tar.gz -C ~/s3ft-jax && rm ~/s3ft-jax.tar.gz"
fi

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
set -e
python3 -m venv ~/s3ft-venv
~/s3ft-venv/bin/pip install -q --upgrade pip
~/s3ft-venv/bin/pip install -q 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
$FETCH
~/s3ft-venv/bin/pip install -q -e ~/s3ft-jax[tfds]
~/s3ft-venv/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'
"
