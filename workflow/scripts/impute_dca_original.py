"""The original ``dca`` package (Eraslan et al. 2019; ``dca.api.dca``) under either imputation protocol.

Runs in ``envs/dca.yaml`` (Python 3.8, TensorFlow 2.4, dca 0.3.4), where scfmbench itself cannot be
installed (it needs Python >= 3.10), so this file depends on numpy, h5py, anndata and dca only, is
written for Python 3.8, and reads the protocol files with h5py. It writes ``predictions.npz`` with
the same arrays as ``scfmbench.impute.protocol.run_imputer`` (masking) and
``scfmbench.impute.mcv.denoise`` (molecular cross-validation), so the shared scoring rule scores it.
tests/test_imputation_workflow.py runs it here with a stand-in for ``dca.api.dca``.

Usage (the rule ``impute_dca_original``)::

    python impute_dca_original.py --input masked.h5ad|train.h5ad --output predictions.npz
        --seed 0 --params '{"ae_type": "zinb-conddisp", ...}' [--threads N]

DCA is fitted to the counts of each masked fold (masking) or to the train part (MCV); genes or
cells without any count are left out of the fit (``dca`` asserts there are no all-zero genes, and
its ``normalize_per_cell`` drops empty cells) and predicted as 0. The denoised mean is put on the
X scale, ``log1p(mean / cell total * 1e4)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile

import h5py
import numpy as np

TARGET_SUM = 1e4
logger = logging.getLogger("impute_dca_original")


def _scalar(ds):
    value = ds[()]
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
        return value.decode() if isinstance(value, bytes) else value
    return value


def read_csr(group):
    """A CSR matrix stored by anndata (group with data, indices, indptr and a shape attribute) as dense float32."""
    shape = tuple(int(s) for s in group.attrs["shape"])
    data, indices, indptr = (group[k][()] for k in ("data", "indices", "indptr"))
    out = np.zeros(shape, dtype=np.float32)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    out[rows, indices] = data
    return out


def to_log_normalized(mean):
    """``log1p(mean / row total * 1e4)`` (rows with total 0 stay 0), float32."""
    totals = mean.sum(axis=1, keepdims=True, dtype=np.float64)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(mean * scale).astype(np.float32)


def dca_denoise(counts, *, seed, params, threads=None, dca_fn=None):
    """Denoised means of ``counts`` (cells x genes) from ``dca.api.dca`` (mode 'denoise'), 0 where not fitted."""
    import anndata

    if dca_fn is None:
        from dca.api import dca as dca_fn
    cells = counts.sum(axis=1) > 0
    genes = counts[cells].sum(axis=0) > 0
    adata = anndata.AnnData(X=counts[np.ix_(cells, genes)].astype(np.float32))
    res = dca_fn(adata, mode="denoise", random_state=int(seed), threads=threads, copy=True, **params)
    mean = np.zeros(counts.shape, dtype=np.float32)
    mean[np.ix_(cells, genes)] = np.asarray(res.X, dtype=np.float32)
    return mean


def _save_npz(path, **arrays):
    """np.savez to a temporary file beside ``path``, renamed into place (an interrupted job leaves nothing)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(input_path, output_path, *, seed, params, threads=None, dca_fn=None):
    """Fit DCA under the protocol of ``input_path`` and write ``output_path``; returns what was written."""
    common = {
        "method": np.array("dca_original"),
        "seed": np.array(int(seed)),
        "params_json": np.array(json.dumps(params, sort_keys=True)),
    }
    with h5py.File(input_path, "r") as f:
        uns = f["uns"]
        if "mcv" in uns:  # molecular cross-validation: one fit on the train part
            counts = read_csr(f["layers"]["counts"])
            sha = _scalar(uns["mcv"]["split_sha256"])
            denoised = np.maximum(
                to_log_normalized(dca_denoise(counts, seed=seed, params=params, threads=threads, dca_fn=dca_fn)), 0
            )
            _save_npz(output_path, denoised=denoised, split_sha256=np.array(sha), **common)
            return denoised
        if "mask" not in uns or "imputation" not in uns:
            raise SystemExit(
                f"{input_path}: neither a masked imputation file (uns/mask) nor an MCV train file (uns/mcv)"
            )
        row, col, fold = (uns["mask"][k][()] for k in ("row", "col", "fold"))
        n_folds = int(_scalar(uns["imputation"]["n_folds"]))
        sha = _scalar(uns["imputation"]["mask_sha256"])
        values = np.empty(len(row), dtype=np.float32)
        for k in range(n_folds):
            sel = np.flatnonzero(fold == k)
            counts = read_csr(f["layers"][f"counts_fold{k}"])
            x = to_log_normalized(dca_denoise(counts, seed=seed, params=params, threads=threads, dca_fn=dca_fn))
            values[sel] = np.maximum(x[row[sel], col[sel]], 0)  # negatives clipped (scHyena protocol)
            logger.info("dca_original: fold %d done (%d hidden entries)", k, len(sel))
    _save_npz(output_path, values=values, mask_sha256=np.array(sha), **common)
    return values


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="masked.h5ad (masking) or train.h5ad (MCV)")
    p.add_argument("--output", required=True, help="predictions.npz")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--params", default="{}", help="JSON object of dca.api.dca keyword arguments")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(args.input, args.output, seed=args.seed, params=json.loads(args.params), threads=args.threads)


if __name__ == "__main__":
    main()
