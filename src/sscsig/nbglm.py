"""PyDESeq2's per-gene solvers run for all genes at once: a pydeseq2 ``Inference`` backend (shared
helper; the pseudobulk stage uses it, :func:`sscsig.stats.deseq2`).

PyDESeq2 fits each gene's negative-binomial GLM (IRLS) and dispersion (L-BFGS-B on log alpha) in a
Python call of its own. On pseudobulk data (tens of donors, ~2,000 genes) the per-call overhead is
most of the cost: one fit of the demo took 8 s, 9 of every 10 in ``irls`` and ``alpha_mle``.
:class:`BatchedInference` replaces these two, and the Wald test, with the same computations
vectorised over genes. Everything else stays PyDESeq2's: size factors, the dispersion trend and
prior, Cook's distances, BH.

- ``irls``: PyDESeq2's iteration (same start, ridge, ``min_mu`` floor, stopping rule on the deviance).
  A gene whose coefficients leave ``[-max_beta, max_beta]`` or that reaches ``maxiter`` goes to
  PyDESeq2's own solver (``pydeseq2.utils.irls_solver``), as PyDESeq2 would switch it to L-BFGS-B.
- ``alpha_mle``: the same objective (negative binomial log-likelihood with the Cox-Reid term and,
  for the MAP step, the log-normal prior) minimised over log alpha within the bounds by a safeguarded
  Newton method started where PyDESeq2 starts, with L-BFGS-B's stopping test (projected gradient
  <= 1e-5). That test matters: where the likelihood is flat (near-Poisson genes started at the lower
  bound) PyDESeq2 and DESeq2 stay at the start; a solver that walks on finds a lower minimum for ~8%
  of such genes, and calls drift from DESeq2's (Kang 2018: 482 genes at FDR < 0.1 instead of 421;
  DESeq2 1.38 in R: 413). Dispersions agree with PyDESeq2's to 1% for 97-99.7% of genes, not bit for
  bit; a gene that does not converge is fitted by ``pydeseq2.utils.fit_alpha_mle``.
"""

from __future__ import annotations

import numpy as np
from pydeseq2 import utils
from pydeseq2.default_inference import DefaultInference
from scipy.special import digamma
from scipy.stats import norm


def _xwx(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``X^T diag(w_g) X`` for each column ``g`` of ``w`` (samples x genes): genes x p x p."""
    p = x.shape[1]
    return (w.T @ (x[:, :, None] * x[:, None, :]).reshape(len(x), p * p)).reshape(-1, p, p)


class BatchedInference(DefaultInference):
    """PyDESeq2's ``DefaultInference`` with ``irls`` and ``alpha_mle`` vectorised over genes (see
    the module docstring); use it as ``DeseqDataSet(..., inference=BatchedInference())``."""

    def irls(self, counts, size_factors, design_matrix, disp, min_mu, beta_tol, min_beta=-30, max_beta=30,
             optimizer="L-BFGS-B", maxiter=250):
        x = np.asarray(design_matrix, float)
        y = np.asarray(counts, float)
        sf = np.asarray(size_factors, float)[:, None]
        disp = np.asarray(disp, float)
        n_genes, p = y.shape[1], x.shape[1]
        if np.linalg.matrix_rank(x) == p:
            q, r = np.linalg.qr(x)
            beta = np.linalg.solve(r, q.T @ np.log(y / sf + 0.1)).T
        else:
            beta = np.zeros((n_genes, p))
            with np.errstate(divide="ignore"):
                beta[:, 0] = np.log(y / sf).mean(0)
        ridge = np.diag(np.repeat(1e-6, p))
        mu = np.maximum(sf * np.exp(x @ beta.T), min_mu)
        dev = np.full(n_genes, 1000.0)
        fallback = np.zeros(n_genes, bool)
        active = np.arange(n_genes)
        it = 0
        while active.size:
            it += 1
            m, d = mu[:, active], disp[active]
            w = m / (1.0 + m * d)
            z = np.log(m / sf) + (y[:, active] - m) / m
            rhs = np.einsum("ni,ng->gi", x, w * z)
            step = np.linalg.solve(_xwx(x, w) + ridge, rhs[:, :, None])[:, :, 0]
            bad = (np.abs(step) > max_beta).any(1) | (it >= maxiter)
            fallback[active[bad]] = True
            active, step = active[~bad], step[~bad]
            beta[active] = step
            mu[:, active] = np.maximum(sf * np.exp(x @ step.T), min_mu)
            old = dev[active]
            dev[active] = -2 * utils.nb_nll(y[:, active], mu[:, active], disp[active])
            active = active[np.abs(dev[active] - old) / (np.abs(dev[active]) + 0.1) > beta_tol]
        w = mu / (1.0 + mu * disp)
        inv = np.linalg.inv(_xwx(x, w) + ridge)
        hat = np.einsum("ni,gij,nj->ng", x, inv, x) * w
        mu_out = sf * np.exp(x @ beta.T)
        converged = np.ones(n_genes, bool)
        for g in np.flatnonzero(fallback):
            beta[g], mu_out[:, g], hat[:, g], converged[g] = utils.irls_solver(
                counts=y[:, g], size_factors=sf[:, 0], design_matrix=x, disp=disp[g], min_mu=min_mu,
                beta_tol=beta_tol, min_beta=min_beta, max_beta=max_beta, optimizer=optimizer, maxiter=maxiter)
        return beta, mu_out, hat, converged

    def alpha_mle(self, counts, design_matrix, mu, alpha_hat, min_disp, max_disp, prior_disp_var=None,
                  cr_reg=True, prior_reg=False, optimizer="L-BFGS-B", *, tol: float = 1e-8, pgtol: float = 1e-5,
                  max_iter: int = 100):
        x = np.asarray(design_matrix, float)
        y = np.asarray(counts, float)
        mu = np.asarray(mu, float)
        alpha_hat = np.asarray(alpha_hat, float)
        lo, hi = np.log(min_disp), np.log(max_disp)
        center = np.log(alpha_hat)

        def loss(la, idx):
            a = np.exp(la)
            yy, mm = y[:, idx], mu[:, idx]
            a1 = 1.0 / a
            f = utils.nb_nll(yy, mm, a)
            g = a * -(a1 ** 2 * (digamma(a1) - digamma(yy + a1) + np.log(1 + mm * a) + (yy - mm) / (mm + a1)).sum(0))
            if cr_reg:
                w = mm / (1 + mm * a)
                m = _xwx(x, w)
                f = f + 0.5 * np.linalg.slogdet(m)[1]
                g = g + 0.5 * (np.linalg.inv(m) * _xwx(x, -(w ** 2))).sum((1, 2)) * a
            if prior_reg:
                f = f + (la - center[idx]) ** 2 / (2 * prior_disp_var)
                g = g + (la - center[idx]) / prior_disp_var
            return f, g

        def flat(la, g):  # L-BFGS-B's test: projected gradient <= pgtol (scipy's default 1e-5)
            return ((la <= lo) & (g > 0)) | ((la >= hi) & (g < 0)) | (np.abs(g) <= pgtol)

        n_genes = y.shape[1]
        la = np.clip(center, lo, hi)
        idx = np.arange(n_genes)
        f, g = loss(la, idx)
        done = flat(la, g)  # e.g. a start in the flat near-Poisson region stays there, as in PyDESeq2 and DESeq2
        idx, f, g = idx[~done], f[~done], g[~done]
        for _ in range(max_iter):
            if idx.size == 0:
                break
            _, g2 = loss(la[idx] + 1e-6, idx)
            curv = (g2 - g) / 1e-6
            newton = curv > 0
            step = np.clip(np.where(newton, -g / np.where(newton, curv, 1.0), -np.sign(g)), -1.0, 1.0)
            # backtracking: halve the step until the loss does not increase (beyond rounding)
            t = np.ones(idx.size)
            new = np.clip(la[idx] + step, lo, hi)
            fn, gn = loss(new, idx)
            slack = 1e-10 * np.maximum(1.0, np.abs(f))
            worse = ~(fn <= f + slack)
            for _ in range(30):
                if not worse.any():
                    break
                t[worse] /= 2
                sub = np.flatnonzero(worse)
                new[sub] = np.clip(la[idx[sub]] + t[sub] * step[sub], lo, hi)
                fn[sub], gn[sub] = loss(new[sub], idx[sub])
                worse[sub] = ~(fn[sub] <= f[sub] + slack[sub])
            new[worse], fn[worse], gn[worse] = la[idx[worse]], f[worse], g[worse]  # no descent left: stay
            moved = np.abs(new - la[idx])
            la[idx] = new
            stop = (moved < tol) | flat(new, gn)
            done[idx[stop]] = True
            keep = ~stop
            idx, f, g = idx[keep], fn[keep], gn[keep]
        dispersions = np.exp(la)
        converged = done.copy()
        for gi in np.flatnonzero(~done):
            dispersions[gi], converged[gi] = utils.fit_alpha_mle(
                counts=y[:, gi], design_matrix=x, mu=mu[:, gi], alpha_hat=alpha_hat[gi], min_disp=min_disp,
                max_disp=max_disp, prior_disp_var=prior_disp_var, cr_reg=cr_reg, prior_reg=prior_reg,
                optimizer=optimizer)
        return dispersions, converged

    def wald_test(self, design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis=None):
        if alt_hypothesis is not None:  # one-sided or thresholded tests: PyDESeq2's per-gene code
            return super().wald_test(design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis)
        x = np.asarray(design_matrix, float)
        mu = np.asarray(mu, float)
        m = _xwx(x, mu / (1 + mu * np.asarray(disp, float)))
        hc = np.linalg.inv(m + ridge_factor) @ np.asarray(contrast, float)
        se = np.sqrt(np.einsum("gi,gij,gj->g", hc, m, hc))
        stat = (np.asarray(lfc, float) - lfc_null) @ np.asarray(contrast, float) / se
        return 2 * norm.sf(np.abs(stat)), stat, se
