"""The peer of bench/bench_xmc_honest.py: Amazon PECOS XR-Linear, run with the python of its own venv.

    python3.11 -m venv /work/pecos-venv && /work/pecos-venv/bin/pip install libpecos==1.2.8 numpy==1.26.4 scipy==1.13.1
    /work/pecos-venv/bin/python bench/pecos_xr_linear.py --train-texts T.json --train-Y Y.npz \\
        --test-texts S.json --out top.npy

libpecos is never a dependency of the product: this script imports only the standard library, numpy, scipy
and pecos (nothing of this repository), so that it runs in that venv. Texts are JSON lists of strings; Y is
a CSR .npz (documents x labels, our label order). Pipeline, as PECOS's XR-Linear text tutorial
(examples/xr-linear-text/README.md):

1. ``Vectorizer.train`` with the tutorial's TF-IDF config (word unigrams, min_df_cnt 5, max_df_ratio 0.98,
   truncate_length 256), fitted on the training texts; ``predict`` on training and test texts;
2. PIFA label embedding (``LabelEmbeddingFactory.create(Y, X, method="pifa")``), the label tree
   ``Indexer.gen(Z, indexer_type="hierarchicalkmeans")`` with its defaults (16 splits, leaves of 100);
3. ``XLinearModel.train(X, Y, C=tree)`` with its defaults (tfn negatives, squared hinge, C 1, threshold 0.1);
4. ``predict(X_test, only_topk=k)`` with the default beam 10; the top-k label indices, best first, are
   saved as an (N, k) int64 .npy (-1 where fewer than k labels came back).

Prints one JSON line: seconds per step, peak RSS (VmHWM of this process; PECOS trains with threads, not
processes), the configs and the library version.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

TFIDF_CONFIG = {
    "type": "tfidf",
    "kwargs": {
        "base_vect_configs": [
            {"ngram_range": [1, 1], "min_df_cnt": 5, "max_df_ratio": 0.98, "truncate_length": 256, "analyzer": "word"}
        ]
    },
}


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024 / 1024, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3)


def topk_indices(Y_pred: sp.csr_matrix, k: int) -> np.ndarray:
    """(N, k) label indices by descending score per row; -1 pads rows with fewer than k entries."""
    Y_pred = Y_pred.tocsr()
    out = np.full((Y_pred.shape[0], k), -1, dtype=np.int64)
    for i in range(Y_pred.shape[0]):
        lo, hi = Y_pred.indptr[i], Y_pred.indptr[i + 1]
        cols, vals = Y_pred.indices[lo:hi], Y_pred.data[lo:hi]
        order = np.lexsort((cols, -vals))[:k]
        out[i, : len(order)] = cols[order]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-texts", type=Path, required=True)
    parser.add_argument("--train-Y", type=Path, required=True)
    parser.add_argument("--test-texts", type=Path, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import pecos
    from pecos.utils.featurization.text.vectorizers import Vectorizer
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel

    seconds: dict[str, float] = {}
    train_texts = json.loads(args.train_texts.read_text(encoding="utf-8"))
    test_texts = json.loads(args.test_texts.read_text(encoding="utf-8"))
    Y = sp.load_npz(args.train_Y).tocsr().astype(np.float32)

    started = time.perf_counter()
    vectorizer = Vectorizer.train(train_texts, config=json.loads(json.dumps(TFIDF_CONFIG)))
    X = vectorizer.predict(train_texts).astype(np.float32).tocsr()
    seconds["vectorizer_fit_transform"] = time.perf_counter() - started
    started = time.perf_counter()
    Z = LabelEmbeddingFactory.create(Y, X, method="pifa")
    tree = Indexer.gen(Z, indexer_type="hierarchicalkmeans")
    seconds["pifa_tree"] = time.perf_counter() - started
    started = time.perf_counter()
    model = XLinearModel.train(X, Y, C=tree)
    seconds["rankers"] = time.perf_counter() - started
    seconds["train_incl_vectorizer"] = sum(seconds.values())
    train_rss = peak_rss_gib()

    started = time.perf_counter()
    X_test = vectorizer.predict(test_texts).astype(np.float32).tocsr()
    Y_pred = model.predict(X_test, only_topk=args.k)
    seconds["predict_test_from_text"] = time.perf_counter() - started
    np.save(args.out, topk_indices(Y_pred, args.k))
    print(
        json.dumps(
            {
                "libpecos": getattr(pecos, "__version__", "?"),
                "tfidf_config": TFIDF_CONFIG,
                "tree": "Indexer.gen(PIFA, hierarchicalkmeans) defaults",
                "xlinear": "XLinearModel.train defaults; predict beam 10 (default), only_topk k",
                "n_train": X.shape[0],
                "n_features": X.shape[1],
                "n_labels": Y.shape[1],
                "n_test": X_test.shape[0],
                "cluster_levels": [int(c.shape[1]) for c in tree],
                "cpu_count": os.cpu_count(),
                "seconds": {n: round(v, 2) for n, v in seconds.items()},
                "peak_rss_gib": train_rss,
                "peak_rss_gib_after_predict": peak_rss_gib(),
                "predict_ms_per_document_from_text": round(
                    1000 * seconds["predict_test_from_text"] / len(test_texts), 3
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
