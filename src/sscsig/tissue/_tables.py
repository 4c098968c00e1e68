"""The per-state tissue table: how many of a tissue's immune cells each blood state makes up, next to
the same donors' blood, by complication, with the state's signature score in the tissue."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._map import UNMAPPED
from ._types import IMMUNE, log_cp10k


def _signature_scores(rna, signatures: dict[str, dict]) -> pd.DataFrame:
    """Per cell, the mean log1p(CP10k) of each signature's genes on the panel (NaN without any)."""
    x = log_cp10k(rna)
    out = {}
    for name, sig in signatures.items():
        idx = rna.var_names.get_indexer(sig["genes"])
        idx = idx[idx >= 0]
        out[name] = np.asarray(x[:, idx].mean(1)).ravel() if len(idx) else np.full(rna.n_obs, np.nan)
    return pd.DataFrame(out, index=rna.obs_names)


def tissue_table(tissue, blood_obs: pd.DataFrame, donors: pd.DataFrame, *, tissue_name: str,
                 complications=(), signatures: dict[str, dict] | None = None,
                 clonotypes: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per blood state (and tissue-only type) of one tissue: donors, cells, shares, blood shares.

    Parameters
    ----------
    tissue
        A mapped tissue MuData (obs ``donor``, ``tissue_type``, ``blood_state``; ``rna`` counts).
    blood_obs
        The blood cells' obs (``donor``, ``cell_state``) -- one sample per donor (the group tests').
    donors
        The design's donor table (index donor; complication columns boolean).
    complications
        Columns of ``donors``: the tissue shares of donors with and without each are compared.
    signatures
        ``{name: {genes, states}}`` (resolved config ``signatures``): the mean score in the tissue
        cells of each state the signature is defined for.
    clonotypes
        :func:`~sscsig.tissue.define_clonotypes` of the tissue and its donors' blood (V(D)J): per
        state, the tissue cells with a receptor (``tcr_cells``) and the share of them whose clone is
        also in the donor's blood (``tcr_shared_with_blood``; per complication the donors' mean,
        ``tcr_shared_<C>`` / ``tcr_shared_no_<C>``).

    Returns
    -------
    (table: one row per state / type, ``kind, state, donors, cells, tissue_share, blood_share,
    tissue_to_blood``, per complication ``share_<C>, share_no_<C>, n_<C>, n_no_<C>, pvalue_<C>``
    (Mann-Whitney on per-donor shares, NaN below 2 donors a side), per signature ``score_<name>``,
    and ``note``; per-donor shares: ``donor, state, kind, tissue_cells, tissue_share, blood_share``
    (and ``tcr_cells, tcr_shared_share``); per clone seen in the tissue,
    :func:`~sscsig.tissue.clone_sharing` (empty without ``clonotypes``))
    """
    from scipy import stats  # here: the rule files import this package (scipy.stats is 1 s of a start)

    obs = tissue.obs
    immune = obs["tissue_type"] == IMMUNE
    state = np.where(immune, obs["blood_state"].astype(str), obs["tissue_type"].astype(str))
    kind = np.where(immune, np.where(obs["blood_state"].astype(str) == UNMAPPED, "unmapped", "blood_state"),
                    "tissue_type")
    cells = pd.DataFrame({"donor": obs["donor"].astype(str).to_numpy(), "state": state, "kind": kind,
                          "immune": immune.to_numpy()}, index=obs.index)
    tissue_donors = sorted(cells["donor"].unique())
    bl = blood_obs[blood_obs["donor"].astype(str).isin(tissue_donors)]
    blood_share = (bl.groupby(["donor", "cell_state"], observed=True).size()
                   / bl.groupby("donor", observed=True).size()).rename("blood_share")
    rows = []
    for d in tissue_donors:
        sub = cells[cells["donor"] == d]
        n_imm, n_all = int(sub["immune"].sum()), len(sub)
        for (s, k), n in sub.groupby(["state", "kind"]).size().items():
            denom = n_imm if k != "tissue_type" else n_all
            rows.append({"donor": d, "state": s, "kind": k, "tissue_cells": int(n),
                         "tissue_share": n / denom if denom else np.nan,
                         "blood_share": float(blood_share.get((d, s), 0.0)) if k == "blood_state" else np.nan})
    per_donor = pd.DataFrame(rows)
    # every donor x state of the tissue, zero where the donor has no such cell
    full = (per_donor.set_index(["donor", "state", "kind"])["tissue_share"].unstack(["state", "kind"])
            .reindex(tissue_donors).fillna(0.0))
    scores = _signature_scores(tissue["rna"], signatures or {})
    out = []
    for (s, k) in full.columns:
        sub = per_donor[(per_donor["state"] == s) & (per_donor["kind"] == k)]
        in_state = (cells["state"] == s) & (cells["kind"] == k)
        denom = int(cells["immune"].sum()) if k != "tissue_type" else len(cells)
        row = {"kind": k, "state": s, "donors": int((sub["tissue_cells"] > 0).sum()), "cells": int(in_state.sum()),
               "tissue_share": in_state.sum() / denom if denom else np.nan}
        if k == "blood_state":
            b = [float(blood_share.get((d, s), 0.0)) for d in tissue_donors]
            row["blood_share"] = float(np.mean(b))
            row["tissue_to_blood"] = row["tissue_share"] / row["blood_share"] if row["blood_share"] > 0 else np.nan
        shares = full[(s, k)]
        for c in complications:
            if c not in donors.columns:
                continue
            flag = donors.reindex(tissue_donors)[c].astype("boolean")
            yes, no = shares[flag.fillna(False).to_numpy()], shares[(~flag).fillna(False).to_numpy()]
            row[f"share_{c}"] = float(yes.mean()) if len(yes) else np.nan
            row[f"share_no_{c}"] = float(no.mean()) if len(no) else np.nan
            row[f"n_{c}"], row[f"n_no_{c}"] = len(yes), len(no)
            row[f"pvalue_{c}"] = (float(stats.mannwhitneyu(yes, no, alternative="two-sided").pvalue)
                                  if len(yes) >= 2 and len(no) >= 2 else np.nan)
        for name, sig in (signatures or {}).items():
            if k == "blood_state" and s in sig["states"] and in_state.any():
                row[f"score_{name}"] = float(scores.loc[in_state[in_state].index, name].mean())
        out.append(row)
    table = pd.DataFrame(out)
    cols = ["kind", "state", "donors", "cells", "tissue_share", "blood_share", "tissue_to_blood"]
    for c in complications:
        cols += [f"{x}_{c}" for x in ("share", "share_no", "n", "n_no", "pvalue")]
    cols += [f"score_{name}" for name in (signatures or {})]
    clones = pd.DataFrame(columns=["clone", "donor", "tissue_cells", "blood_cells", "shared", "tissue_states",
                                   "blood_states"])
    if clonotypes is not None:
        from ._clonotypes import clone_sharing, sharing_by_state

        clones = clone_sharing(clonotypes, pd.Series(state, index=obs.index),
                               blood_obs["cell_state"].astype(str))
        by = sharing_by_state(clonotypes, pd.Series(state, index=obs.index))
        pooled = by.groupby("state")[["tcr_cells", "tcr_shared"]].sum()
        table["tcr_cells"] = table["state"].map(pooled["tcr_cells"]).fillna(0).astype(int)
        table["tcr_shared_with_blood"] = table["state"].map(pooled["tcr_shared"] / pooled["tcr_cells"])
        flags = donors.reindex(tissue_donors)
        for c in complications:
            if c not in flags.columns:
                continue
            f = flags[c].astype("boolean").fillna(False)
            for name, members in ((f"tcr_shared_{c}", set(f.index[f])), (f"tcr_shared_no_{c}", set(f.index[~f]))):
                sub = by[by["donor"].isin(members)]
                table[name] = table["state"].map(sub.groupby("state")["tcr_shared_share"].mean())
        cols += ["tcr_cells", "tcr_shared_with_blood"] + [f"tcr_shared{x}_{c}" for c in complications for x in ("", "_no")]
        per_donor = per_donor.merge(by.drop(columns="tcr_shared"), on=["donor", "state"], how="left")
    table = table.reindex(columns=[c for c in cols if c in table.columns or c.startswith("score_")
                                   or c in ("blood_share", "tissue_to_blood")])
    order = {"blood_state": 0, "tissue_type": 1, "unmapped": 2}
    table = table.sort_values(["kind", "cells"], key=lambda col: col.map(order) if col.name == "kind" else -col,
                              kind="mergesort").reset_index(drop=True)
    n = len(tissue_donors)
    table["note"] = (f"{tissue_name}: {n} donor(s); shares describe these donors, "
                     + ("too few for a test between groups" if n < 6 else "p-values are exploratory (few donors)"))
    table.insert(0, "tissue", tissue_name)
    return table, per_donor.sort_values(["donor", "kind", "state"]).reset_index(drop=True), clones
