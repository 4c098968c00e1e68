"""totalVI (Gayoso et al., Nat Methods 2021; scvi-tools): joint RNA + protein latent space and
denoised protein, seeded, with early stopping on the validation ELBO."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


#: the most epochs ``max_epochs: auto`` allows
MAX_AUTO_EPOCHS = 400


def auto_epochs(n_cells: int, *, on_gpu: bool, epoch_budget_cells: dict | None = None, min_epochs: int = 20) -> int:
    """totalVI epochs for ``max_epochs: auto``: the cell-pass budget / cells, within
    [``min_epochs``, 400]. ``epoch_budget_cells``: ``{cpu, gpu}`` cell passes (config
    ``integration.totalvi``; the schema's defaults for keys not given)."""
    from ..config import default

    budgets = {**default("integration.totalvi.epoch_budget_cells"), **(epoch_budget_cells or {})}
    budget = budgets["gpu" if on_gpu else "cpu"]
    return int(np.clip(round(budget / max(n_cells, 1)), min_epochs, MAX_AUTO_EPOCHS))


def _gpu_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@contextmanager
def _torch_deterministic():
    """torch's deterministic kernels for the block, then the caller's setting back."""
    import torch

    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def run_totalvi(mdata: md.MuData, hvg: np.ndarray, *, batch_key: str | None, n_latent: int = 20,
                max_epochs: int | str = "auto", epoch_budget_cells: dict | None = None, min_epochs: int = 20,
                early_stopping_patience: int = 20, batch_size: int = 256, accelerator: str = "auto",
                denoise_samples: int = 10, save_model: bool = True, seed: int = 0,
                model_dir: str | Path | None = None) -> dict:
    """Train TOTALVI on HVG + protein counts; return latent, denoised protein and training facts.

    ``mdata['rna'].layers['counts']`` and ``mdata['prot'].layers['counts']`` must hold raw counts.
    The keyword options are config ``integration.totalvi``; the model is saved to ``model_dir``
    when it is given and ``save_model`` is true.
    """
    import anndata as ad
    import scvi

    scvi.settings.seed = seed
    rna, prot = mdata["rna"], mdata["prot"]
    obs = pd.DataFrame(index=mdata.obs_names)
    if batch_key:
        obs["batch"] = mdata.obs[batch_key].astype(str).to_numpy()
    r = ad.AnnData(X=rna.layers["counts"][:, hvg].astype(np.float32), obs=obs.copy(),
                   var=pd.DataFrame(index=rna.var_names[hvg]))
    pr = ad.AnnData(X=np.asarray(prot.layers["counts"].toarray() if hasattr(prot.layers["counts"], "toarray")
                                 else prot.layers["counts"], dtype=np.float32),
                    obs=obs.copy(), var=pd.DataFrame(index=prot.var_names))
    sub = md.MuData({"rna": r, "prot": pr})
    scvi.model.TOTALVI.setup_mudata(sub, rna_layer=None, protein_layer=None,
                                    batch_key="batch" if batch_key else None,
                                    modalities={"rna_layer": "rna", "protein_layer": "prot",
                                                "batch_key": "rna"})
    on_gpu = accelerator != "cpu" and _gpu_available()
    epochs = max_epochs
    if epochs == "auto":
        epochs = auto_epochs(sub.n_obs, on_gpu=on_gpu, epoch_budget_cells=epoch_budget_cells, min_epochs=min_epochs)
    with _torch_deterministic():
        model = scvi.model.TOTALVI(sub, n_latent=n_latent)
        t0 = time.time()
        model.train(max_epochs=int(epochs), accelerator="gpu" if on_gpu else "cpu", devices=1,
                    batch_size=batch_size, early_stopping=True,
                    early_stopping_patience=early_stopping_patience,
                    enable_progress_bar=False)
        train_s = time.time() - t0
        hist = model.history
        trained = int(len(hist["elbo_train"])) if "elbo_train" in hist else int(epochs)
        latent = np.asarray(model.get_latent_representation(), dtype=np.float32)
        batches = sorted(obs["batch"].unique()) if batch_key else None
        _, denoised = model.get_normalized_expression(
            n_samples=denoise_samples, return_mean=True, transform_batch=batches,
            gene_list=[str(r.var_names[0])], include_protein_background=False, return_numpy=True)
    if model_dir is not None and save_model:
        model.save(str(model_dir), save_anndata=False, overwrite=True)
    val = hist.get("elbo_validation")
    facts = {"epochs_max": int(epochs), "epochs_trained": trained, "train_seconds": round(train_s, 1),
             "accelerator": "gpu" if on_gpu else "cpu",
             "elbo_validation_last": float(val.iloc[-1, 0]) if val is not None and len(val) else float("nan")}
    log.info("totalVI: %s", facts)
    return {"latent": latent, "denoised": np.asarray(denoised, dtype=np.float32), "facts": facts}


