"""Process-group set-up for torchrun and SLURM, on CPU (gloo) and CUDA (nccl).

We initialise the process group ourselves before building the mmengine Runner: mmengine's own ``init_dist`` calls
``torch.cuda.set_device``, which fails on CPU-only machines. The Runner then finds the group already initialised and
only wraps the model (with ``device_ids=None`` on CPU).
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import torch
import torch.distributed as dist


def _slurm_env() -> None:
    """Translate SLURM's variables into torch's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)."""
    os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
    os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_NTASKS"])
    os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "127.0.0.1")
        try:
            first = subprocess.check_output(["scontrol", "show", "hostnames", nodes], text=True).split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            first = nodes.split(",")[0]
        os.environ["MASTER_ADDR"] = first
    # a port derived from the job id, so two jobs sharing a node do not collide
    job = int(os.environ.get("SLURM_JOB_ID", "0"))
    os.environ.setdefault("MASTER_PORT", str(20000 + job % 20000))


def init_distributed(launcher: str, backend: str = "auto", timeout_s: int = 1800) -> bool:
    """Initialise ``torch.distributed`` for ``launcher`` in ``{'local', 'torchrun', 'slurm'}``.

    Returns True when the process is part of a multi-process group. ``backend='auto'`` picks nccl when CUDA is
    available, gloo otherwise.
    """
    if launcher == "local":
        for key in ("WORLD_SIZE", "SLURM_NTASKS"):
            if int(os.environ.get(key, "1")) > 1:
                raise RuntimeError(
                    f"{key}={os.environ[key]} but launcher=local: every process would train alone into the same "
                    "folder; pass launcher=torchrun (tools/dist_train.sh) or launcher=slurm"
                )
        return False
    if dist.is_available() and dist.is_initialized():
        return True
    if launcher == "slurm":
        _slurm_env()
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise RuntimeError(
                f"launcher={launcher} needs the environment variable {key}; start the job with "
                "tools/dist_train.sh (torchrun) or tools/slurm_train.sh (srun)"
            )
    use_cuda = torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return True


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def parameters_in_sync(module: torch.nn.Module, atol: float = 0.0) -> bool:
    """True when every rank holds the same parameters (max abs deviation from rank 0 <= ``atol``)."""
    if get_world_size() == 1:
        return True
    # NCCL only reduces CUDA tensors
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flat = torch.cat([p.detach().float().reshape(-1).to(device) for p in module.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    deviation = torch.tensor([(flat - reference).abs().max().item() if flat.numel() else 0.0], device=device)
    dist.all_reduce(deviation, op=dist.ReduceOp.MAX)
    return bool(deviation.item() <= atol)
