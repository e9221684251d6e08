#!/usr/bin/env bash
# Set up s3ft-jax on every worker of a Cloud TPU VM (run from your workstation).
#
#   scripts/tpu_vm_setup.sh TPU_NAME ZONE [REPO_URL]
#
# Installs jax[tpu] and this package (with the TFDS extra) into ~/s3ft-venv on all workers.
# Datasets: copy them to the same path on every worker (or a shared mount) and point
# S3FT_DATA_DIR there, or use hub names (--config.task.source=hf:openai/gsm8k:main).
set -euo pipefail
TPU_NAME=${1:?usage: tpu_vm_setup.sh TPU_NAME ZONE [REPO_URL]}
ZONE=${2:?usage: tpu_vm_setup.sh TPU_NAME ZONE [REPO_URL]}
REPO=${3:-https://github.com/s3ft-jax/s3ft-jax.git}

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
set -e
python3 -m venv ~/s3ft-venv
~/s3ft-venv/bin/pip install -q --upgrade pip
~/s3ft-venv/bin/pip install -q 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
if [ -d ~/s3ft-jax/.git ]; then git -C ~/s3ft-jax pull -q; else git clone -q $REPO ~/s3ft-jax; fi
~/s3ft-venv/bin/pip install -q -e ~/s3ft-jax[tfds]
~/s3ft-venv/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'
"
