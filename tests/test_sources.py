"""Loaders of the papers' datasets on fixtures built in each source's real layout:

- scGPT: figshare's zip with one nested zip per dataset under scGPT_processed_datasets/Fig2_Annotation/
  (ms-*.zip -> ms/c_data.h5ad + filtered_ms_adata.h5ad, label 'Factor Value[inferred cell type -
  authors labels]', var 'gene_name' beside Ensembl var_names, X = log1p(normalize_total) restricted
  to HVGs; mye-*.zip -> mye/reference_adata.h5ad + query_adata.h5ad, 'cell_type'; hPancreas ->
  demo_train.h5ad + demo_test.h5ad, 'Celltype'), or the Google Drive folder;
- GEARS: Dataverse zip <name>/perturb_processed.h5ad (obs condition, cell_type; var gene_name);
- GEO GSE157827: GSE157827_RAW.tar of per-sample GSM<id>_<sample>_{barcodes,features,matrix} files;
- GEO GSE157783: three tar.gz, each with one TSV (dense genes x cells UMI table, cells, genes).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench._io import sha256_file
from scfmbench.data.loaders import load_dataset
from scfmbench.data.sources import download_inputs, recover_counts, unique_names

MS_LABEL = "Factor Value[inferred cell type - authors labels]"


# --------------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------------


def make_counts(n_cells: int, n_genes: int, seed: int) -> np.ndarray:
    """Poisson counts in which every cell has at least one gene with exactly 1 count among the first 20."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, size=(n_cells, n_genes)).astype(np.float32)
    counts[np.arange(n_cells), rng.integers(0, min(20, n_genes), n_cells)] = 1
    return counts


def lognorm(counts: np.ndarray) -> np.ndarray:
    return np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)


def h5ad_bytes(adata: ad.AnnData, tmp_path) -> bytes:
    path = tmp_path / "tmp.h5ad"
    adata.write_h5ad(path)
    data = path.read_bytes()
    path.unlink()
    return data


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(files: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def scgpt_ms_pair(seed: int = 0):
    """ms train/test as scGPT distributes them: normalized over 30 genes, then 20 HVGs kept; X only."""
    genes = [f"ENSG{i:011d}" for i in range(30)]
    symbols = [f"G{i}" for i in range(30)]
    symbols[7] = "G3"  # two Ensembl IDs with one symbol
    hvg = list(range(20))
    out, truth = {}, {}
    for split, n, fname in (("train", 24, "c_data.h5ad"), ("test", 18, "filtered_ms_adata.h5ad")):
        counts = make_counts(n, 30, seed + (split == "test"))
        keep = hvg if split == "train" else hvg[:-1]  # the test file lacks one gene
        x = lognorm(counts)[:, keep]
        labels = np.array(["oligodendrocyte", "astrocyte", "microglial cell"])[np.arange(n) % 3]
        obs = pd.DataFrame(
            {MS_LABEL: labels, "celltype": labels, "Sample Characteristic[individual]": "d1"},
            index=[f"{split}{i}" for i in range(n)],
        )
        var = pd.DataFrame({"gene_name": [symbols[j] for j in keep]}, index=[genes[j] for j in keep])
        out[fname] = ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)
        truth[split] = (
            counts[:, keep],
            labels,
            list(unique_names([symbols[j] for j in keep], [genes[j] for j in keep])),
        )
    return out, truth


def scgpt_myeloid_pair():
    out = {}
    for fname, n, seed in (("reference_adata.h5ad", 20, 3), ("query_adata.h5ad", 12, 4)):
        counts = make_counts(n, 15, seed)
        obs = pd.DataFrame(
            {"cell_type": np.array(["Macro_C1QC", "cDC2_CD1C"])[np.arange(n) % 2], "cancer": "UCEC"},
            index=[f"{fname[:3]}{i}" for i in range(n)],
        )
        adata = ad.AnnData(
            X=sp.csr_matrix(lognorm(counts)), obs=obs, var=pd.DataFrame(index=[f"M{i}" for i in range(15)])
        )
        adata.layers["counts"] = sp.csr_matrix(counts)
        out[fname] = adata
    return out


def scgpt_pancreas_pair():
    out = {}
    for fname, n, seed in (("demo_train.h5ad", 20, 5), ("demo_test.h5ad", 10, 6)):
        counts = make_counts(n, 12, seed)
        var = pd.DataFrame(index=[f"P{i}" for i in range(12)])
        obs = pd.DataFrame(
            {"Celltype": np.array(["alpha", "beta"])[np.arange(n) % 2]}, index=[f"{fname[:6]}{i}" for i in range(n)]
        )
        raw = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
        adata = ad.AnnData(X=sp.csr_matrix(lognorm(counts)), obs=obs, var=var)
        adata.raw = raw
        out[fname] = adata
    return out


@pytest.fixture(scope="module")
def scgpt_bundle(tmp_path_factory):
    """figshare 43939560 in miniature: nested per-dataset zips (with a decoy 'demo_train.h5ad' elsewhere)."""
    tmp = tmp_path_factory.mktemp("scgpt")
    ms, truth = scgpt_ms_pair()
    inner = {
        "ms-20240103T153851Z-001.zip": {f"ms/{k}": h5ad_bytes(v, tmp) for k, v in ms.items()},
        "mye-20240103T153920Z-001.zip": {f"mye/{k}": h5ad_bytes(v, tmp) for k, v in scgpt_myeloid_pair().items()},
        "hPancreas-20240103T154000Z-001.zip": {
            f"hPancreas/{k}": h5ad_bytes(v, tmp) for k, v in scgpt_pancreas_pair().items()
        },
    }
    files = {f"scGPT_processed_datasets/Fig2_Annotation/{name}": zip_bytes(content) for name, content in inner.items()}
    files["scGPT_processed_datasets/Fig5_Other/other-001.zip"] = zip_bytes({"other/demo_train.h5ad": b"not this one"})
    path = tmp / "scgpt_processed_datasets.zip"
    path.write_bytes(zip_bytes(files))
    return path, truth


# --------------------------------------------------------------------------------------------------
# counts and names
# --------------------------------------------------------------------------------------------------


def test_recover_counts_inverts_log1p_per_cell():
    counts = np.array([[1, 2, 5, 0], [2, 3, 0, 0], [0, 0, 0, 0], [1, 1, 40, 7]], dtype=float)
    scale = np.array([[1e4 / 8], [0.37], [1.0], [1e4 / 49]])  # any per-cell scale
    x = np.log1p(counts * scale).astype(np.float32)
    got = recover_counts(sp.csr_matrix(x)).toarray()
    # Cell 1's smallest count is 2 and 3/2 is not an integer: multiplier 2 recovers it exactly.
    np.testing.assert_array_equal(got, counts)


def test_recover_counts_known_limit_and_errors():
    # All of a cell's counts share a factor (2, 4, 6): indistinguishable from (1, 2, 3), as documented.
    x = np.log1p(np.array([[2.0, 4.0, 6.0]]) * 10)
    np.testing.assert_array_equal(recover_counts(sp.csr_matrix(x)).toarray(), [[1, 2, 3]])
    with pytest.raises(InputError, match="not log1p-transformed"):
        recover_counts(sp.csr_matrix(np.array([[100.0, 3.0]])))
    # Values rounded to 2 decimals no longer invert to integers: a clear refusal, never a guess.
    x = np.round(np.log1p(np.array([[1.0, 37.0, 113.0]]) * 3.3), 2)
    with pytest.raises(InputError, match="cannot be recovered for 1 of 1 cells"):
        recover_counts(sp.csr_matrix(x))


def test_unique_names_rule():
    assert list(unique_names(["A", "B", "A", "C"], ["e1", "e2", "e3", "e4"])) == ["A", "B", "A_e3", "C"]
    assert list(unique_names(["A", "B", "A", "A-1"])) == ["A", "B", "A-2", "A-1"]  # never takes an existing name
    assert list(unique_names(["A", "A", "A"], ["x", "x", "x"])) == ["A", "A_x", "A-1"]


# --------------------------------------------------------------------------------------------------
# scGPT
# --------------------------------------------------------------------------------------------------


def test_scgpt_ms_from_figshare_zip(scgpt_bundle):
    path, truth = scgpt_bundle
    raw = load_dataset("ms", {"source": "scgpt_ms", "path": str(path), "recover_counts": True})
    (c_tr, l_tr, g_tr), (c_te, l_te, g_te) = truth["train"], truth["test"]
    shared = [g for g in g_tr if g in g_te]
    assert raw.n_obs == len(l_tr) + len(l_te) and raw.n_vars == len(shared) == 19
    # var_names are the gene_name symbols, the duplicate made unique with its Ensembl ID
    assert "G3" in raw.var_names and f"G3_ENSG{7:011d}" in raw.var_names
    counts = raw.layers["counts"].toarray()
    train = (raw.obs["split"] == "train").to_numpy()
    np.testing.assert_array_equal(counts[train], c_tr[:, [g_tr.index(g) for g in shared]])
    np.testing.assert_array_equal(counts[~train], c_te[:, [g_te.index(g) for g in shared]])
    assert list(raw.obs["cell_type"][train]) == list(l_tr) and list(raw.obs["cell_type"][~train]) == list(l_te)
    prov = raw.uns["provenance"]
    assert prov["source"] == "scgpt_ms" and prov["dataset"] == "ms"
    assert prov["inputs_sha256"] == {path.name: sha256_file(path)}
    assert prov["counts_from"]["train"].startswith("X (counts recovered")


def test_scgpt_without_counts_says_how_to_proceed(scgpt_bundle):
    path, _ = scgpt_bundle
    with pytest.raises(InputError, match=r"c_data.h5ad: no raw integer counts .*recover_counts: true"):
        load_dataset("ms", {"source": "scgpt_ms", "path": str(path)})


def test_scgpt_myeloid_and_pancreas_find_their_counts(scgpt_bundle):
    path, _ = scgpt_bundle
    mye = load_dataset("mye", {"source": "scgpt_myeloid", "path": str(path)})
    assert mye.uns["provenance"]["counts_from"] == {"train": "layers['counts']", "test": "layers['counts']"}
    assert set(mye.obs["cell_type"]) == {"Macro_C1QC", "cDC2_CD1C"} and (mye.obs["split"] == "test").sum() == 12
    np.testing.assert_array_equal(mye.layers["counts"][:20].toarray(), make_counts(20, 15, 3))
    panc = load_dataset("panc", {"source": "scgpt_pancreas", "path": str(path)})
    assert panc.uns["provenance"]["counts_from"]["train"] == ".raw.X"
    np.testing.assert_array_equal(panc.layers["counts"][20:].toarray(), make_counts(10, 12, 6))
    assert set(panc.obs["cell_type"]) == {"alpha", "beta"}


def test_scgpt_google_drive_folder_and_missing_pieces(tmp_path):
    ms, truth = scgpt_ms_pair(seed=10)
    folder = tmp_path / "ms"
    folder.mkdir()
    for name, adata in ms.items():
        adata.write_h5ad(folder / name)
    raw = load_dataset("ms", {"source": "scgpt_ms", "path": str(folder), "recover_counts": True})
    assert raw.uns["provenance"]["inputs_sha256"] == {n: sha256_file(folder / n) for n in ms}
    (folder / "filtered_ms_adata.h5ad").unlink()
    with pytest.raises(InputError, match="no file named 'filtered_ms_adata.h5ad'"):
        load_dataset("ms", {"source": "scgpt_ms", "path": str(folder), "recover_counts": True})
    bad = ms["c_data.h5ad"]
    del bad.obs[MS_LABEL]
    bad.write_h5ad(folder / "c_data.h5ad")
    ms["filtered_ms_adata.h5ad"].write_h5ad(folder / "filtered_ms_adata.h5ad")
    with pytest.raises(InputError) as err:
        load_dataset("ms", {"source": "scgpt_ms", "path": str(folder), "recover_counts": True})
    assert f"column {MS_LABEL!r} not found" in str(err.value) and "'celltype'" in str(err.value)


def test_missing_download_names_the_rule_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = {"source": "scgpt_ms", "path": None}
    assert download_inputs(cfg) == ["resources/downloads/scgpt_processed_datasets.zip"]
    assert download_inputs({"source": "pbmc68k"}) == [] and download_inputs({**cfg, "path": "x"}) == []
    with pytest.raises(
        InputError, match=r"not downloaded yet. Fetch with `snakemake resources/downloads/scgpt_processed_datasets.zip`"
    ):
        load_dataset("ms", cfg)
    with pytest.raises(InputError, match="datasets.ms.path: nowhere does not exist"):
        load_dataset("ms", {**cfg, "path": "nowhere"})


# --------------------------------------------------------------------------------------------------
# GEARS
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gears_zip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gears")
    counts = make_counts(30, 25, 11)
    conditions = np.array(["ctrl", "AARS+ctrl", "ATF6+ctrl"])[np.arange(30) % 3]
    obs = pd.DataFrame(
        {
            "condition": conditions,
            "cell_type": "K562",
            "dose_val": "1+1",
            "control": (conditions == "ctrl").astype(int),
            "condition_name": [f"K562_{c}_1+1" for c in conditions],
        },
        index=[f"AAAC{i}" for i in range(30)],
    )
    var = pd.DataFrame({"gene_name": [f"S{i}" for i in range(25)]}, index=[f"ENSG{i:011d}" for i in range(25)])
    adata = ad.AnnData(X=sp.csr_matrix(lognorm(counts)), obs=obs, var=var)
    path = tmp / "gears_adamson.zip"
    path.write_bytes(
        zip_bytes(
            {
                "adamson/perturb_processed.h5ad": h5ad_bytes(adata, tmp),
                "adamson/data_pyg/cell_graphs.pkl": b"\x80\x04N.",
            }
        )
    )
    return path, counts, conditions


def test_gears_keeps_conditions(gears_zip, tmp_path, monkeypatch):
    path, counts, conditions = gears_zip
    # Through the download location, as the workflow reads it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resources" / "downloads").mkdir(parents=True)
    (tmp_path / "resources" / "downloads" / "gears_adamson.zip").write_bytes(path.read_bytes())
    raw = load_dataset(
        "adamson", {"source": "gears_adamson", "path": None, "label_column": "condition", "recover_counts": True}
    )
    assert list(raw.obs["cell_type"]) == list(conditions) and list(raw.obs["condition"]) == list(conditions)
    assert set(raw.obs["gears_cell_type"]) == {"K562"} and list(raw.obs["control"][:3]) == [1, 0, 0]
    assert list(raw.var_names[:2]) == ["S0", "S1"]
    np.testing.assert_array_equal(raw.layers["counts"].toarray(), counts)
    assert "split" not in raw.obs  # GEARS splits by perturbation: the perturbation task's business


def test_gears_wrong_label_column(gears_zip):
    path, _, _ = gears_zip
    with pytest.raises(InputError, match=r"column 'perturbation' not found; columns are \['condition', 'cell_type'"):
        load_dataset(
            "adamson",
            {"source": "gears_adamson", "path": str(path), "label_column": "perturbation", "recover_counts": True},
        )


# --------------------------------------------------------------------------------------------------
# GEO GSE157827 (Lau 2020): per-sample 10x triplets in GSE157827_RAW.tar
# --------------------------------------------------------------------------------------------------

FEATURES = [(f"ENSG{i:011d}", f"g{i}", "Gene Expression") for i in range(8)] + [
    ("ENSG00000999999", "g2", "Gene Expression")
]


def mtx_gz(matrix: np.ndarray) -> bytes:
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sp.coo_matrix(matrix.T.astype(int)), field="integer")  # genes x cells, as 10x
    return gzip.compress(buf.getvalue())


def tsv_gz(rows) -> bytes:
    return gzip.compress("".join("\t".join(r) + "\n" for r in rows).encode())


@pytest.fixture(scope="module")
def lau(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lau")
    samples = {"GSM4775561_AD1": make_counts(6, 9, 21), "GSM4775572_NC1": make_counts(5, 9, 22)}
    files = {}
    for prefix, counts in samples.items():
        barcodes = [f"AAAC{j}-1" for j in range(len(counts))]
        files[f"{prefix}_barcodes.tsv.gz"] = tsv_gz([[b] for b in barcodes])
        files[f"{prefix}_matrix.mtx.gz"] = mtx_gz(counts)
        if prefix.endswith("NC1"):
            files[f"{prefix}_genes.tsv.gz"] = tsv_gz([f[:2] for f in FEATURES])  # CellRanger 2 naming
        else:
            files[f"{prefix}_features.tsv.gz"] = tsv_gz(FEATURES)
    tar = tmp / "GSE157827_RAW.tar"
    tar.write_bytes(tar_bytes(files))
    # The authors' annotation: one sample written as GEO's prefix, one without; cell AAAC5-1 of AD1 unlabelled.
    labels = pd.DataFrame(
        {
            "sample": ["AD1"] * 5 + ["GSM4775572_NC1"] * 5,
            "barcode": [f"AAAC{j}-1" for j in range(5)] * 2,
            "celltype": ["Ex", "In", "Ast", "Oli", "Mic"] * 2,
        }
    )
    labels.to_csv(tmp / "lau_labels.csv", index=False)
    return tmp, samples


def lau_cfg(tmp, **labels):
    cell_labels = {
        "file": str(tmp / "lau_labels.csv"),
        "barcode_column": "barcode",
        "label_column": "celltype",
        "sample_column": "sample",
    }
    cell_labels.update(labels)
    return {"source": "geo_lau2020", "path": str(tmp / "GSE157827_RAW.tar"), "cell_labels": cell_labels}


def test_lau2020_samples_and_labels(lau):
    tmp, samples = lau
    raw = load_dataset("lau", lau_cfg(tmp))
    assert raw.n_obs == 10 and raw.uns["provenance"]["cells_unlabelled_dropped"] == 1
    assert list(raw.obs_names[:2]) == ["AD1_AAAC0-1", "AD1_AAAC1-1"] and set(raw.obs["sample"]) == {"AD1", "NC1"}
    assert set(raw.obs["gsm"]) == {"GSM4775561", "GSM4775572"}
    assert list(raw.var_names) == [f"g{i}" for i in range(8)] + ["g2_ENSG00000999999"]
    counts = raw.layers["counts"].toarray()
    np.testing.assert_array_equal(counts[:5], samples["GSM4775561_AD1"][:5])
    np.testing.assert_array_equal(counts[5:], samples["GSM4775572_NC1"])
    assert list(raw.obs["cell_type"][:5]) == ["Ex", "In", "Ast", "Oli", "Mic"]
    assert set(raw.uns["provenance"]["inputs_sha256"]) == {"GSE157827_RAW.tar", "lau_labels.csv"}


@pytest.mark.parametrize("layout", ["extracted", "tar_in_folder"])
def test_lau2020_from_a_folder(lau, tmp_path, layout):
    tmp, samples = lau
    folder = tmp_path / "GSE157827"
    folder.mkdir()
    if layout == "extracted":
        with tarfile.open(tmp / "GSE157827_RAW.tar") as t:
            t.extractall(folder, filter="data")
    else:
        (folder / "GSE157827_RAW.tar").write_bytes((tmp / "GSE157827_RAW.tar").read_bytes())
    raw = load_dataset("lau", {**lau_cfg(tmp), "path": str(folder)})
    np.testing.assert_array_equal(raw.layers["counts"].toarray()[5:], samples["GSM4775572_NC1"])


def test_lau2020_errors(lau, tmp_path):
    tmp, _ = lau
    with pytest.raises(InputError, match="GEO has no cell-type labels"):
        load_dataset("lau", {"source": "geo_lau2020", "path": str(tmp / "GSE157827_RAW.tar"), "cell_labels": {}})
    with pytest.raises(
        InputError, match=r"column 'cell_type' not found; columns are \['sample', 'barcode', 'celltype'\]"
    ):
        load_dataset("lau", lau_cfg(tmp, label_column="cell_type"))
    with pytest.raises(InputError, match="cells listed twice in the label table, e.g. 'AAAC0-1'; set .*sample_column"):
        load_dataset("lau", lau_cfg(tmp, sample_column=None))  # barcodes alone repeat across samples
    pd.DataFrame({"sample": ["X1"], "barcode": ["AAAC0-1"], "celltype": ["Ex"]}).to_csv(
        tmp_path / "other.csv", index=False
    )
    with pytest.raises(
        InputError,
        match=(
            r"no cell matches the label table: cells look like \['AD1_AAAC0-1', 'AD1_AAAC1-1'\], "
            r"table keys like \['X1_AAAC0-1'\]"
        ),
    ):
        load_dataset("lau", lau_cfg(tmp, file=str(tmp_path / "other.csv")))
    # A sample whose features file is missing.
    with tarfile.open(tmp / "GSE157827_RAW.tar") as t:
        kept = {m.name: t.extractfile(m).read() for m in t.getmembers() if "NC1_genes" not in m.name}
    (tmp_path / "GSE157827_RAW.tar").write_bytes(tar_bytes(kept))
    with pytest.raises(
        InputError, match=r"sample GSM4775572_NC1 has GSM4775572_NC1_matrix.mtx.gz but none of .*features"
    ):
        load_dataset("lau", {**lau_cfg(tmp), "path": str(tmp_path / "GSE157827_RAW.tar")})


# --------------------------------------------------------------------------------------------------
# GEO GSE157783 (Smajic 2022): dense UMI table, cell table and genes table, each in a tar.gz
# --------------------------------------------------------------------------------------------------


def smajic_files(tmp, *, gene_column: bool = False):
    rng = np.random.default_rng(31)
    umi = rng.poisson(1.0, size=(6, 7))  # genes x cells
    barcodes = [f"AAACCTG{j}_{1 + j % 2}" for j in range(7)]
    order = [3, 0, 5, 1, 4, 2]  # the genes table is not sorted by row
    genes = pd.DataFrame({"gene": [f"ENSG{i:011d}" for i in order], "row": [i + 1 for i in order], "vst.mean": 0.5})
    cells = pd.DataFrame(
        {
            "barcode": barcodes[:-1],
            "cell_ontology": ["DaNs", "Astrocytes", "Microglia"] * 2,
            "patient": ["C1", "PD3"] * 3,
        }
    )
    lines = ["\t".join(barcodes)] + [
        "\t".join(([f"ENSG{i:011d}"] if gene_column else []) + [str(v) for v in umi[i]]) for i in range(6)
    ]
    files = {
        "UMI": ("\n".join(lines) + "\n").encode(),
        "cell": cells.to_csv(sep="\t", index=False).encode(),
        "genes": genes.to_csv(sep="\t", index=False).encode(),
    }
    paths = []
    for key, data in files.items():
        path = tmp / f"GSE157783_IPDCO_hg_midbrain_{key}.tar.gz"
        path.write_bytes(tar_bytes({f"IPDCO_hg_midbrain_{key}.tsv": data}, mode="w:gz"))
        paths.append(path)
    return umi, barcodes, cells


@pytest.mark.parametrize("gene_column", [False, True])
def test_smajic2022_dense_table(tmp_path, monkeypatch, gene_column):
    umi, barcodes, cells = smajic_files(tmp_path, gene_column=gene_column)
    downloads = tmp_path / "resources" / "downloads"
    downloads.mkdir(parents=True)
    for p in tmp_path.glob("GSE157783_*.tar.gz"):
        p.rename(downloads / p.name)
    monkeypatch.chdir(tmp_path)
    raw = load_dataset("smajic", {"source": "geo_smajic2022", "path": None, "cell_labels": {}})
    assert list(raw.obs_names) == barcodes[:-1] and raw.uns["provenance"]["cells_unlabelled_dropped"] == 1
    assert list(raw.var_names) == [f"ENSG{i:011d}" for i in range(6)]  # sorted by the genes table's row
    np.testing.assert_array_equal(raw.layers["counts"].toarray(), umi[:, :-1].T)
    assert list(raw.obs["cell_type"]) == list(cells["cell_ontology"]) and list(raw.obs["sample"]) == list(
        cells["patient"]
    )
    assert len(raw.uns["provenance"]["inputs_sha256"]) == 3


def test_smajic2022_missing_file_and_bad_rows(tmp_path):
    smajic_files(tmp_path)
    (tmp_path / "GSE157783_IPDCO_hg_midbrain_genes.tar.gz").unlink()
    cfg = {"source": "geo_smajic2022", "path": str(tmp_path), "cell_labels": {}}
    with pytest.raises(InputError, match="no file named 'IPDCO_hg_midbrain_genes.tsv'"):
        load_dataset("smajic", cfg)
    genes = pd.DataFrame({"gene": ["ENSG1", "ENSG2"], "row": [1, 2]})
    (tmp_path / "GSE157783_IPDCO_hg_midbrain_genes.tar.gz").write_bytes(
        tar_bytes({"IPDCO_hg_midbrain_genes.tsv": genes.to_csv(sep="\t", index=False).encode()}, mode="w:gz")
    )
    with pytest.raises(InputError, match="the UMI table has 6 gene rows but the genes table lists 2 genes"):
        load_dataset("smajic", cfg)
