#!/usr/bin/env bash
# Run one s3ft command on every host at once (TPU VM pod slice, or a GPU cluster).
#
#   scripts/launch_multihost.sh TPU_NAME ZONE run --config=configs/paper.py:gsm8k --config.mesh.fsdp=-1
#
# Every host runs the same command with S3FT_DISTRIBUTED=1, so the CLI calls
# jax.distributed.initialize() first (on TPU VMs it finds the coordinator itself). The mesh
# spans all hosts; each host feeds its shard of every batch and only process 0 writes files,
# so --config.workdir must be a path every host can see (a shared mount or GCS fuse).
#
# GPU clusters: start the same command on each node with S3FT_DISTRIBUTED=1 and
# S3FT_COORDINATOR (host:port of process 0) / S3FT_NUM_PROCESSES / S3FT_PROCESS_ID set (the
# CLI also reads JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; under SLURM or
# Open MPI JAX finds them itself). To try it on one machine: python -m s3ft_jax.launch -n 2 -- ...
set -euo pipefail
TPU_NAME=${1:?usage: launch_multihost.sh TPU_NAME ZONE COMMAND [--config...]}
ZONE=${2:?usage: launch_multihost.sh TPU_NAME ZONE COMMAND [--config...]}
shift 2
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
cd ~/s3ft-jax && S3FT_DISTRIBUTED=1 S3FT_DATA_DIR=\${S3FT_DATA_DIR:-\$HOME/data} ~/s3ft-venv/bin/s3ft$ARGS
"
