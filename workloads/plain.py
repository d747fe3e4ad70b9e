"""The same training without Ray: one process, the shared loop. Used by the benchmark and for quick checks."""

from __future__ import annotations

import torch

from workloads.loop import BestEpoch, LoopStats, TensorBatches, run_epochs
from workloads.train import Prepared


def fit_plain(prep: Prepared, threads: int, device: str = "cpu") -> tuple[torch.nn.Module, LoopStats]:
    """Train ``prep`` as a Ray Train worker would (same seed, model, optimizer, loader, loop)."""
    torch.set_num_threads(threads)
    params = prep.params
    torch.manual_seed(int(params["seed"]))
    model = prep.task.build_model(params, prep.train).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params["lr"]))
    loader = TensorBatches(prep.train, int(params["batch_size"]), int(params["seed"]))
    stats = run_epochs(
        model,
        optimizer,
        prep.task,
        loader,
        prep.val,
        start_epoch=0,
        epochs=int(params["epochs"]),
        device=torch.device(device),
        class_weights=prep.class_weights,
        best=(best := BestEpoch(prep.task, int(params.get("patience", 0)))),
    )
    if best.weights is not None:
        model.load_state_dict(best.weights)
    return model, stats
