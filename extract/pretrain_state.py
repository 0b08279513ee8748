"""The resumable state of `neurofeat pretrain` (``<out>/.pretrain_state/``), never a pickle.

After every epoch rank 0 writes the method (+ Group-DRO) and optimiser tensors as
safetensors and the counters, history and non-tensor optimiser state as JSON; the
directory is replaced atomically, so a run killed while saving resumes from the
previous epoch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

__all__ = ["STATE_DIR", "load_state", "save_state"]

STATE_DIR = ".pretrain_state"


def save_state(state_dir: Path, method: torch.nn.Module, dro: torch.nn.Module | None,
                optimizer: torch.optim.Optimizer, scaler: Any, progress: dict[str, Any]) -> None:
    """Write *method*, *dro*, *optimizer* and *scaler* state plus *progress* (JSON) to *state_dir*, atomically."""
    from safetensors.torch import save_file

    tmp = state_dir.with_name(state_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {f"method.{k}": v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
    if dro is not None:
        tensors.update({f"dro.{k}": v.detach().cpu().contiguous() for k, v in dro.state_dict().items()})
    save_file(tensors, str(tmp / "model.safetensors"))
    opt_state = optimizer.state_dict()
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_scalars: dict[str, Any] = {}
    for index, entry in opt_state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                opt_tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                opt_scalars[f"{index}.{key}"] = value
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    meta = {"param_groups": opt_state["param_groups"], "scalars": opt_scalars,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            **progress}
    (tmp / "progress.json").write_text(json.dumps(meta, indent=1, default=float))
    if state_dir.exists():
        shutil.rmtree(state_dir)
    os.replace(tmp, state_dir)


def load_state(state_dir: Path, method: torch.nn.Module, dro: torch.nn.Module | None,
                optimizer: torch.optim.Optimizer, scaler: Any, device: torch.device) -> dict[str, Any]:
    """Load what :func:`save_state` wrote into the given objects (on *device*); returns the progress JSON."""
    from safetensors.torch import load_file

    meta = json.loads((state_dir / "progress.json").read_text())
    tensors = load_file(str(state_dir / "model.safetensors"), device=str(device))
    method.load_state_dict({k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")})
    if dro is not None:
        dro.load_state_dict({k[len("dro."):]: v for k, v in tensors.items() if k.startswith("dro.")})
    opt_tensors = load_file(str(state_dir / "optimizer.safetensors"), device=str(device))
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(opt_tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for entry in state.values():  # AdamW keeps "step" on the CPU unless capturable/fused
        if "step" in entry and torch.is_tensor(entry["step"]):
            entry["step"] = entry["step"].cpu()
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    return meta
