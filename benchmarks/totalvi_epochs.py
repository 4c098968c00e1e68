"""How many totalVI epochs does the demo need? The ELBO curve and what the downstream steps see at
each epoch (run by hand; the evidence behind ``integration.totalvi.epoch_budget_cells``).

    python benchmarks/totalvi_epochs.py RESULTS --epochs 200 --at 10 20 30 50 75 100 150 200 \
        --out benchmarks/totalvi_epochs.tsv [--kl-warmup-epochs N]

``RESULTS`` is a finished demo run (its ``cohort/merged.h5mu``, ``cohort/annotated.h5mu`` and
``demo/truth/cells.tsv``). totalVI is trained once for ``--epochs`` epochs without early stopping,
with the pipeline's settings and seed; at each epoch of ``--at`` the latent space is taken and the
rest of the pipeline's cell-level steps are re-run on it: neighbours, Leiden, UMAP-free clustering
(``sscsig.integrate.cluster``), marker annotation (``sscsig.annotate``), then scored against the
simulator's truth (lineage / state macro-F1, the two hypothesis states' F1) and with the integration
metrics (scib-metrics: iLISI, batch ASW, ARI/NMI against the true states) on 5,000 cells. Each row
also has the validation ELBO and the training time so far.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--at", type=int, nargs="+", default=[10, 20, 30, 50, 75, 100, 150, 200])
    ap.add_argument("--kl-warmup-epochs", type=int, default=None,
                    help="n_epochs_kl_warmup (default: scvi-tools' 0.75 x cells steps)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import mudata as md
    import scvi
    import torch
    import yaml
    from lightning.pytorch.callbacks import Callback

    from sscsig.annotate import annotate, annotation_vs_truth, load_markers
    from sscsig.config import validate_config
    from sscsig.integrate import cluster, integration_metrics, normalise
    from sscsig.io import read_cell_table, read_obs

    torch.set_num_threads(2)
    cfg = validate_config(yaml.safe_load(open("config/config.yaml")))
    seed, tv = cfg["seed"], cfg["integration"]["totalvi"]
    merged = md.read_h5mu(args.results / "cohort/merged.h5mu")
    annotated = md.read_h5mu(args.results / "cohort/annotated.h5mu")  # normalised RNA, protein layers, HVGs
    truth_path = args.results / "demo/truth/cells.tsv"
    batch = merged.obs["batch"].astype(str).to_numpy()
    hvg = annotated["rna"].var["highly_variable"].to_numpy()
    normalise(merged)
    scvi.settings.seed = seed
    import anndata as ad

    obs = pd.DataFrame({"batch": batch}, index=merged.obs_names)
    r = ad.AnnData(X=merged["rna"].layers["counts"][:, hvg].astype(np.float32), obs=obs.copy())
    p = ad.AnnData(X=np.asarray(merged["prot"].layers["counts"].toarray(), dtype=np.float32), obs=obs.copy())
    sub = md.MuData({"rna": r, "prot": p})
    scvi.model.TOTALVI.setup_mudata(sub, batch_key="batch", modalities={"rna_layer": "rna", "protein_layer": "prot",
                                                                        "batch_key": "rna"})
    model = scvi.model.TOTALVI(sub, n_latent=tv["n_latent"])
    markers = load_markers(cfg["annotation"]["markers"])
    truth = read_cell_table(truth_path)
    t = truth.loc[merged.obs_names]
    good = (~t.is_doublet & ~t.is_low_quality).to_numpy()
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(np.flatnonzero(good), min(5000, good.sum()), replace=False))
    rows, t0 = [], time.time()

    def evaluate(epoch: int, elbo: float) -> None:
        latent = np.asarray(model.get_latent_representation(), dtype=np.float32)
        m = annotated.copy()
        m.obsm["X_integrated"] = latent
        cluster(m, **cfg["clustering"], seed=seed)
        ann = {k: v for k, v in cfg["annotation"].items() if k != "markers"}
        annotate(m, markers, **ann, seed=seed)
        summary, _ = annotation_vs_truth(m.obs, truth_path)
        met = integration_metrics({"totalVI": latent[pick]}, batch[pick], t["cell_state"].to_numpy()[pick],
                                  max_cells=None, seed=seed).iloc[0]
        row = {"epoch": epoch, "elbo_validation": elbo, "train_s": round(time.time() - t0, 1),
               **{k: summary[k] for k in ("lineage_macro_f1", "state_macro_f1", "f1_CD14.EGR1", "f1_CD8.TEM_T2ISG")},
               **{k: float(met[k]) for k in ("ilisi", "batch_asw", "ari", "nmi", "celltype_asw")}}
        rows.append(row)
        print(json.dumps(row), flush=True)

    class Checkpoints(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            e = trainer.current_epoch + 1
            if e in args.at:  # the latent as the trained model would give it: eval mode (no dropout)
                was = pl_module.training
                pl_module.eval()
                model.is_trained_ = True
                evaluate(e, float(trainer.callback_metrics.get("elbo_validation", np.nan)))
                model.is_trained_ = False
                pl_module.train(was)

    kw = {"n_epochs_kl_warmup": args.kl_warmup_epochs} if args.kl_warmup_epochs else {}
    model.train(max_epochs=args.epochs, accelerator="cpu", devices=1, batch_size=tv["batch_size"],
                early_stopping=False, enable_progress_bar=False, callbacks=[Checkpoints()], **kw)
    curve = model.history["elbo_validation"].iloc[:, 0].to_numpy()
    out = pd.DataFrame(rows)
    out.to_csv(args.out, sep="\t", index=False, float_format="%.4g")
    pd.DataFrame({"epoch": np.arange(1, len(curve) + 1), "elbo_validation": curve}).to_csv(
        args.out.with_suffix(".curve.tsv"), sep="\t", index=False, float_format="%.6g")
    print(out.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
