#!/usr/bin/env bash
# Launching train_gpt / train_dit on several GPUs (llmc/dist/distributed.cuh; README
# "Several GPUs"): one process per GPU, data parallel, ZeRO-0/1/2. Examples:
#
#   bash scripts/run_multi_gpu.sh mpirun 8 ./train_gpt --preset gpt-s --zero 1          # one node, Open MPI
#   bash scripts/run_multi_gpu.sh env 8 ./train_gpt --preset gpt-s --zero 2             # one node, no MPI
#   sbatch --nodes 4 --gpus-per-node 8 scripts/run_multi_gpu.sh slurm ./train_gpt ...   # several nodes, Slurm
#
# The trainer's flags follow the program; every rank gets the same ones. The
# batch flags are per GPU (--batch-size) or global (--total-batch-tokens for
# train_gpt: world x B x T x accumulation). Only rank 0 prints and writes logs,
# samples and checkpoints; the others print one memory line each. Exported for
# every launch: NCCL_NVLS_ENABLE=0 (NVLink multicast off; required on some machines).
#
#SBATCH --job-name=mega
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
set -euo pipefail
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
mode=${1:-}
case $mode in
mpirun)
    # mpirun sets OMPI_COMM_WORLD_{SIZE,RANK,LOCAL_RANK}; a build with MPI (mpi.h found by
    # the Makefile) passes the NCCL id with MPI_Bcast, one without uses the TCP rendezvous
    # on MASTER_ADDR:MASTER_PORT (set here for that case).
    n=$2; shift 2
    exec mpirun --allow-run-as-root -np "$n" --bind-to none \
        -x NCCL_NVLS_ENABLE -x MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}" -x MASTER_PORT="${MASTER_PORT:-29500}" "$@"
    ;;
env)
    # N background processes with torchrun-style variables; rank 0 listens on
    # MASTER_ADDR:MASTER_PORT and hands the NCCL id to the others (or use
    # --rendezvous-file PATH on a shared file system instead of TCP).
    n=$2; shift 2
    export MASTER_ADDR=${MASTER_ADDR:-127.0.0.1} MASTER_PORT=${MASTER_PORT:-29500} WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n
    pids=()
    for ((r = 1; r < n; r++)); do
        RANK=$r LOCAL_RANK=$r "$@" > "${LOG_PREFIX:-rank}$r.log" 2>&1 &
        pids+=($!)
    done
    rc=0
    RANK=0 LOCAL_RANK=0 "$@" || rc=$?
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    exit $rc
    ;;
slurm)
    # inside an sbatch allocation: srun starts one task per GPU (SLURM_PROCID, SLURM_NTASKS,
    # SLURM_LOCALID are read by llmc/dist/rendezvous.h); rank 0 runs on the first host, which
    # listens for the NCCL id. The port is derived from the job id so that jobs sharing
    # a node do not collide.
    shift
    MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    MASTER_PORT=$((20000 + ${SLURM_JOB_ID:-0} % 20000))
    export MASTER_ADDR MASTER_PORT
    exec srun --kill-on-bad-exit=1 --export=ALL "$@"
    ;;
*)
    sed -n '2,17p' "$0"
    exit 1
    ;;
esac
