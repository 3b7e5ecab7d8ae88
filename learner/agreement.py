"""Inter-annotator agreement of multi-label answers, per label and overall, with bootstrap intervals.

A *unit* is a document; each of its *answers* is one annotator's set of label ids. Only units with two or more
answers carry agreement (the others can still be compared with gold). Coefficients:

- per label (the answers reduced to "ticked / not ticked"): Krippendorff's alpha (nominal, binary), Gwet's AC1
  (multi-rater), Fleiss' kappa and, when exactly two annotators answered every unit, Cohen's kappa;
- overall: Krippendorff's alpha with the MASI distance between label sets (Passonneau 2006), the macro mean of the
  per-label alphas and a pooled AC1 (mean observed and mean chance agreement over the labels, then the ratio, as
  pooled kappa: De Vries et al. 2008); the mean pairwise MASI agreement as the plain observed share;
- per annotator: mean MASI agreement with the other answers to the same documents, and against gold (adjudicated
  answers): mean MASI, micro precision / recall / F1.

Formulas, for a unit u with m_u answers of which k_u tick the label, n = sum m_u and k = sum k_u:

- alpha (binary) = 1 - (n - 1) * sum_u [k_u (m_u - k_u) / (m_u - 1)] / (k (n - k)); undefined when k is 0 or n;
- observed agreement p_a = mean_u [k_u (k_u - 1) + (m_u - k_u)(m_u - k_u - 1)] / (m_u (m_u - 1)), and the mean
  per-unit share pi = mean_u k_u / m_u; AC1 = (p_a - p_e) / (1 - p_e) with p_e = 2 pi (1 - pi) (Gwet 2008);
- Fleiss' kappa: the same p_a with p_e = pi^2 + (1 - pi)^2. With unequal numbers of answers per unit this is the
  generalised form (Gwet 2014, ch. 2: agreement averaged over units, chance from the mean per-unit shares); with the
  same number of answers everywhere it is exactly Fleiss (1971) (statsmodels' ``fleiss_kappa``, checked in tests);
  undefined when pi is 0 or 1;
- Cohen's kappa: two annotators' 2 x 2 table, chance from their own marginals; undefined when chance is 1;
- alpha-MASI: alpha with the distance 1 - MASI(A, B), MASI = Jaccard * M, M = 1 (equal), 2/3 (one contains the
  other), 1/3 (they overlap), 0 (disjoint); two empty answers agree (distance 0). nltk's ``masi_distance`` rounds
  the thirds to 0.67 / 0.33.

Intervals: a percentile bootstrap over units (``n_boot`` resamples, seeded). Each resample is a vector of unit
weights, so every statistic is a matrix product of the weights with per-unit sums (sparse, only the labels in play),
never a loop over resamples. A resample where a statistic is undefined is left out; with fewer than half of the
resamples defined there is no interval. An interval is widened to contain its estimate. Undefined values are None.

Cost: per label O(B * nnz) for the sums (nnz: unit-label pairs with a tick) plus sorting B values per label for the
percentiles; alpha-MASI O(V^2) distances between the distinct label sets (in blocks) and O(B * U^2) for the
bootstrap of its expected disagreement, fine for a few thousand units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

LEVEL = 0.95
LABEL_CHUNK = 2048  # labels per block of bootstrap arrays (B x chunk floats each)
DISTANCE_BLOCK = 1 << 22  # distance-matrix entries per block for alpha-MASI
# alpha-MASI needs a units x units matrix of summed distances: above this many units it is computed on a uniform
# random sample of them (seeded; the result says how many), 3,000 units = 72 MB.
MASI_MAX_UNITS = 3000
FLEISS_RULE = (
    "Fleiss' kappa in Gwet's generalised form: observed agreement averaged over documents, chance from the mean "
    "per-document share of answers ticking the label; exactly Fleiss (1971) when every document has the same "
    "number of answers"
)


def masi(a: Collection[int], b: Collection[int]) -> float:
    """MASI agreement of two label sets (Passonneau 2006): Jaccard times 1 (equal), 2/3 (one contains the other),
    1/3 (they overlap) or 0; two empty sets agree (1)."""
    set_a, set_b = set(a), set(b)
    inter = len(set_a & set_b)
    return float(_masi(np.array([inter]), np.array([len(set_a)]), np.array([len(set_b)]))[0])


def _masi(inter: np.ndarray, size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """Elementwise MASI from intersection sizes and set sizes (broadcasting)."""
    inter = np.asarray(inter, dtype=np.float64)
    size_a = np.asarray(size_a, dtype=np.float64)
    size_b = np.asarray(size_b, dtype=np.float64)
    union = size_a + size_b - inter
    jaccard = np.divide(inter, union, out=np.ones(np.broadcast(inter, union).shape), where=union > 0)
    equal = (inter == size_a) & (inter == size_b)
    subset = inter == np.minimum(size_a, size_b)
    monotonicity = np.where(equal, 1.0, np.where(subset, 2.0 / 3.0, np.where(inter > 0, 1.0 / 3.0, 0.0)))
    return jaccard * monotonicity


def _none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _summary(value: float, low: float, high: float) -> dict[str, float | None]:
    if not math.isfinite(value):
        return {"value": None, "low": None, "high": None}
    if not (math.isfinite(low) and math.isfinite(high)):
        return {"value": _none(value), "low": None, "high": None}
    return {"value": _none(value), "low": _none(min(low, value)), "high": _none(max(high, value))}


def _intervals(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of ``samples`` (B, K), NaN = undefined in that resample (left out).
    Linear interpolation between order statistics (numpy's default). A column defined in fewer than half of the
    resamples gets NaN."""
    n_boot, n_cols = samples.shape
    if n_boot == 0:
        nan = np.full(n_cols, np.nan)
        return nan, nan.copy()
    ordered = np.sort(samples, axis=0)  # NaN sort last
    valid = np.sum(~np.isnan(samples), axis=0)  # (K,)
    ends = []
    cols = np.arange(n_cols)
    for q in ((1 - level) / 2, 1 - (1 - level) / 2):
        pos = q * np.maximum(valid - 1, 0)
        below = np.floor(pos).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(valid - 1, 0))
        frac = pos - below
        low_v, high_v = ordered[below, cols], ordered[above, cols]
        ends.append(np.where(2 * valid >= n_boot, low_v + frac * (high_v - low_v), np.nan))
    return ends[0], ends[1]


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (an undefined coefficient)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _label_coefficients(
    weights: np.ndarray, sums: dict[str, sp.csr_matrix], m: np.ndarray, n_units: int
) -> dict[str, np.ndarray]:
    """The per-label coefficients under unit weights (B, U): each (B, Lc), NaN where undefined.

    ``sums`` holds (U, Lc) sparse per-unit terms: "k" ticks, "dis" k (m - k) / (m - 1), "share" k / m, and for
    Cohen's kappa "a", "b" (each annotator's ticks) and "xor" (they differ)."""
    wt = np.ascontiguousarray(weights.T)  # (U, B)

    def weighted(name: str) -> np.ndarray:
        return np.asarray((sums[name].T @ wt).T)  # (B, Lc)

    n_b = (weights @ m)[:, None]  # (B, 1) pairable values
    total = float(n_units)  # every resample has U units
    k_b = weighted("k")
    dis_b = weighted("dis")
    alpha = 1.0 - (n_b - 1.0) * _divide(dis_b, k_b * (n_b - k_b))
    # Observed agreement per unit is 1 - 2 k (m - k) / (m (m - 1)) = 1 - 2 dis / m.
    p_a = 1.0 - 2.0 * np.asarray((sums["dis_m"].T @ wt).T) / total
    pi = weighted("share") / total
    p_e_ac1 = 2.0 * pi * (1.0 - pi)
    ac1 = (p_a - p_e_ac1) / (1.0 - p_e_ac1)  # p_e_ac1 <= 1/2
    p_e_fleiss = pi * pi + (1.0 - pi) * (1.0 - pi)
    fleiss = _divide(p_a - p_e_fleiss, 1.0 - p_e_fleiss)
    fleiss[np.isclose(p_e_fleiss, 1.0, rtol=0.0, atol=1e-12)] = np.nan
    out = {"alpha": alpha, "ac1": ac1, "fleiss": fleiss, "p_a": p_a, "p_e_ac1": p_e_ac1}
    if "a" in sums:
        p_o = 1.0 - weighted("xor") / total
        share_a, share_b = weighted("a") / total, weighted("b") / total
        p_e = share_a * share_b + (1.0 - share_a) * (1.0 - share_b)
        cohen = _divide(p_o - p_e, 1.0 - p_e)
        cohen[np.isclose(p_e, 1.0, rtol=0.0, atol=1e-12)] = np.nan
        out["cohen"] = cohen
    return out


def _validate(
    units: Sequence[Mapping[Hashable, Collection[int]]],
    gold: Sequence[Collection[int] | None] | None,
    labels: Collection[int],
) -> tuple[list[list[tuple[Hashable, frozenset[int]]]], list[frozenset[int] | None]]:
    if isinstance(units, (str, bytes)) or not isinstance(units, Sequence):
        raise ValueError("units must be a list of {annotator: label ids} mappings")
    universe = set(labels)
    answers: list[list[tuple[Hashable, frozenset[int]]]] = []
    for index, unit in enumerate(units):
        if not isinstance(unit, Mapping):
            raise ValueError(f"unit {index} is not a mapping of annotator to label ids")
        rows = []
        for annotator, chosen in unit.items():
            if isinstance(chosen, (str, bytes)):
                raise ValueError(f"unit {index}, annotator {annotator!r}: label ids must be a collection of ints")
            chosen_set = frozenset(int(label) for label in chosen)
            unknown = chosen_set - universe
            if unknown:
                raise ValueError(f"unit {index}, annotator {annotator!r}: unknown label ids {sorted(unknown)[:5]}")
            rows.append((annotator, chosen_set))
        answers.append(rows)
    if gold is None:
        gold_sets: list[frozenset[int] | None] = [None] * len(answers)
    else:
        if len(gold) != len(answers):
            raise ValueError(f"gold has {len(gold)} entries for {len(answers)} units")
        gold_sets = []
        for index, entry in enumerate(gold):
            if entry is None:
                gold_sets.append(None)
                continue
            gold_set = frozenset(int(label) for label in entry)
            unknown = gold_set - universe
            if unknown:
                raise ValueError(f"gold of unit {index}: unknown label ids {sorted(unknown)[:5]}")
            gold_sets.append(gold_set)
    return answers, gold_sets


def _unit_distances(unit_of_answer: np.ndarray, sets: list[frozenset[int]], n_units: int) -> tuple[np.ndarray, int]:
    """Delta (U, U): summed MASI distances between every answer of unit u and every answer of unit v, computed
    over the distinct label sets in blocks. Returns (Delta, number of distinct sets)."""
    distinct: dict[frozenset[int], int] = {}
    value_of_answer = np.array([distinct.setdefault(s, len(distinct)) for s in sets], dtype=np.int64)
    n_values = len(distinct)
    columns: dict[int, int] = {}
    rows, cols = [], []
    for value, label_set in enumerate(distinct):
        for label in label_set:
            rows.append(value)
            cols.append(columns.setdefault(label, len(columns)))
    S = sp.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(n_values, max(len(columns), 1)), dtype=np.float64
    )  # (V, L') binary
    sizes = np.asarray(S.sum(axis=1)).ravel()  # (V,)
    A = sp.csr_matrix(
        (np.ones(len(sets)), (unit_of_answer, value_of_answer)), shape=(n_units, n_values), dtype=np.float64
    )  # (U, V) how often each set answers each unit
    A_csc = A.tocsc()
    delta = np.zeros((n_units, n_units))
    block = max(1, DISTANCE_BLOCK // max(n_values, 1))
    for start in range(0, n_values, block):
        stop = min(start + block, n_values)
        inter = (S[start:stop] @ S.T).toarray()  # (blk, V)
        distance = 1.0 - _masi(inter, sizes[start:stop, None], sizes[None, :])  # (blk, V)
        to_units = np.asarray(A @ distance.T)  # (U, blk): summed distance of unit u's answers to value j
        delta += np.asarray(A_csc[:, start:stop] @ to_units.T).T  # (U, U)
    return delta, n_values


def agreement(
    units: Sequence[Mapping[Hashable, Collection[int]]],
    *,
    labels: Collection[int],
    gold: Sequence[Collection[int] | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Agreement of the answers to ``units`` (one mapping annotator -> label ids per document), as a JSON-able dict.

    ``labels`` is the label universe (ids outside it raise ``ValueError``); ``gold`` optionally gives one gold
    label set (or None) per unit. Units with two or more answers make the agreement set; gold units with any answer
    are compared with gold. Returns::

        {"units", "answers", "n_annotators", "labels_in_play", "label_universe", "gold_units", "cohen_applies",
         "equal_answers", "fleiss_rule", "bootstrap": {"resamples", "seed", "level"},
         "overall": {"alpha_masi", "alpha_macro", "ac1_pooled", "masi_mean": {"value", "low", "high"}},
         "labels": [{"label", "units", "positives", "documents", "alpha", "ac1", "fleiss", "cohen"}, ...],
         "annotators": [{"annotator", "units", "vs_others": {...} | None, "vs_gold": {...} | None}, ...],
         "seconds"}

    Label rows cover the labels ticked in at least one answer of the agreement set, worst alpha first (labels
    whose alpha is undefined last, by AC1). ``positives``: answers that tick it; ``documents``: units where at
    least one answer does. Undefined values (no variance, fewer than two units) are None, never NaN.

    **Per annotator against the others** is the mean, over the documents the annotator shares with others, of the
    mean MASI agreement between their answer and each other answer there. Why not an alpha or kappa per annotator:
    those are properties of a group of coders (their chance term pools everyone's answers), and pairwise kappas
    over shared units would be computed on a different, often tiny, set of documents for each pair; a mean
    pairwise agreement over the annotator's own shared documents is comparable between annotators and reads
    directly. Against gold: mean MASI and micro precision / recall / F1 (each tick of the annotator against the
    gold ticks), over the gold documents they answered. Intervals: bootstrap over those documents (two or more).
    """
    started = time.perf_counter()
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer; got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1; got {level!r}")
    answers, gold_sets = _validate(units, gold, labels)
    rng = np.random.default_rng(seed)

    agree_units = [index for index, rows in enumerate(answers) if len(rows) >= 2]
    n_units = len(agree_units)
    annotators = sorted({str(a) for index in agree_units for a, _ in answers[index]})
    unit_of_answer = np.array([u for u, index in enumerate(agree_units) for _ in answers[index]], dtype=np.int64)
    sets = [s for index in agree_units for _, s in answers[index]]
    who = [str(a) for index in agree_units for a, _ in answers[index]]
    n_answers = len(sets)
    m = np.bincount(unit_of_answer, minlength=n_units).astype(np.float64)  # (U,) answers per unit
    in_play = sorted({label for s in sets for label in s})
    column = {label: j for j, label in enumerate(in_play)}
    cohen_applies = len(annotators) == 2 and n_units > 0 and bool(np.all(m == 2))

    weights = (
        rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot).astype(np.float64)
        if n_units and n_boot
        else np.zeros((0, n_units))
    )  # (B, U)
    ones = np.ones((1, n_units))

    # Per-unit, per-label tick counts (U, L') and the terms every coefficient needs.
    rows_ = np.repeat(unit_of_answer, [len(s) for s in sets])
    cols_ = np.array([column[label] for s in sets for label in s], dtype=np.int64)
    K = sp.csr_matrix((np.ones(len(cols_)), (rows_, cols_)), shape=(n_units, len(in_play)), dtype=np.float64)  # (U, L')
    K.sum_duplicates()
    K_coo = K.tocoo()
    m_nz = m[K_coo.row]
    dis_data = K_coo.data * (m_nz - K_coo.data) / (m_nz - 1.0)

    def like(data: np.ndarray) -> sp.csc_matrix:
        return sp.csc_matrix((data, (K_coo.row, K_coo.col)), shape=K.shape)

    terms = {
        "k": like(K_coo.data),
        "dis": like(dis_data),
        "dis_m": like(dis_data / m_nz),
        "share": like(K_coo.data / m_nz),
    }
    if cohen_applies:
        first = np.array([w == annotators[0] for w in who])
        for name, mask in (("a", first), ("b", ~first)):
            idx = np.flatnonzero(mask)
            r = np.repeat(unit_of_answer[idx], [len(sets[i]) for i in idx])
            c = np.array([column[label] for i in idx for label in sets[i]], dtype=np.int64)
            terms[name] = sp.csc_matrix((np.ones(len(c)), (r, c)), shape=K.shape)
        terms["xor"] = sp.csc_matrix(terms["a"] + terms["b"] - 2 * terms["a"].multiply(terms["b"]))

    positives = np.asarray(K.sum(axis=0)).ravel()
    documents = np.asarray((K > 0).sum(axis=0)).ravel()
    label_rows: list[dict[str, Any]] = []
    macro_sum = np.zeros(len(weights))
    macro_count = np.zeros(len(weights))
    pa_sum, pe_sum = np.zeros(len(weights)), np.zeros(len(weights))
    point_alpha: list[float] = []
    point_pa, point_pe = 0.0, 0.0
    for start in range(0, len(in_play), LABEL_CHUNK):
        chunk = slice(start, min(start + LABEL_CHUNK, len(in_play)))
        part = {name: sp.csc_matrix(matrix[:, chunk]) for name, matrix in terms.items()}
        point = _label_coefficients(ones, part, m, n_units)
        boot = _label_coefficients(weights, part, m, n_units)
        point_alpha.extend(point["alpha"][0].tolist())
        point_pa += float(point["p_a"][0].sum())
        point_pe += float(point["p_e_ac1"][0].sum())
        macro_sum += np.nansum(boot["alpha"], axis=1)
        macro_count += np.sum(~np.isnan(boot["alpha"]), axis=1)
        pa_sum += boot["p_a"].sum(axis=1)
        pe_sum += boot["p_e_ac1"].sum(axis=1)
        bounds = {name: _intervals(boot[name], level) for name in ("alpha", "ac1", "fleiss", "cohen") if name in boot}
        for j in range(chunk.stop - chunk.start):
            label_j = chunk.start + j
            row: dict[str, Any] = {
                "label": in_play[label_j],
                "units": n_units,
                "positives": int(positives[label_j]),
                "documents": int(documents[label_j]),
            }
            for name in ("alpha", "ac1", "fleiss", "cohen"):
                if name in bounds:
                    low, high = bounds[name]
                    row[name] = _summary(float(point[name][0, j]), float(low[j]), float(high[j]))
                else:
                    row[name] = None
            label_rows.append(row)

    def order(row: dict[str, Any]) -> tuple[int, float, float]:
        a, c = row["alpha"]["value"], row["ac1"]["value"]
        return (a is None, a if a is not None else 0.0, c if c is not None else 0.0)

    label_rows.sort(key=order)

    # Overall: macro alpha, pooled AC1, alpha-MASI and mean pairwise MASI.
    defined = [a for a in point_alpha if math.isfinite(a)]
    macro = float(np.mean(defined)) if defined else math.nan
    macro_b = _divide(macro_sum, macro_count)[:, None]
    n_lab = len(in_play)
    pooled = (point_pa - point_pe) / (n_lab - point_pe) if n_lab else math.nan  # means: divide both by n_lab
    pooled_b = _divide(pa_sum - pe_sum, n_lab - pe_sum)[:, None] if n_lab else np.full((len(weights), 1), np.nan)

    masi_units = min(n_units, MASI_MAX_UNITS)
    if n_units:
        unit_m, answer_of_unit, sets_m, w_m = unit_of_answer, np.arange(n_units), sets, weights
        if n_units > MASI_MAX_UNITS:  # a uniform sample of the units, with bootstrap weights of its own
            answer_of_unit = np.sort(rng.choice(n_units, MASI_MAX_UNITS, replace=False))
            position = np.full(n_units, -1, dtype=np.int64)
            position[answer_of_unit] = np.arange(MASI_MAX_UNITS)
            keep = position[unit_of_answer] >= 0
            unit_m = position[unit_of_answer[keep]]
            sets_m = [s for s, kept in zip(sets, keep, strict=True) if kept]
            w_m = (
                rng.multinomial(masi_units, np.full(masi_units, 1.0 / masi_units), size=n_boot).astype(np.float64)
                if n_boot
                else np.zeros((0, masi_units))
            )
        m_m = m[answer_of_unit]
        delta, n_values = _unit_distances(unit_m, sets_m, masi_units)
        within = np.diag(delta) / (m_m - 1.0)  # (U,) sum over ordered pairs / (m_u - 1)
        all_w = np.concatenate([np.ones((1, masi_units)), w_m])  # (1 + B, U)
        n_b = all_w @ m_m  # (1 + B,)
        expected = np.einsum("bu,bu->b", all_w @ delta, all_w)  # sum over ordered pairs of all values
        alpha_masi = 1.0 - (n_b - 1.0) * _divide(all_w @ within, expected)
        masi_mean = 1.0 - (all_w @ (within / m_m)) / masi_units
    else:
        n_values = 0
        alpha_masi = masi_mean = np.full(1 + len(weights), np.nan)

    def overall(point_value: float, samples: np.ndarray) -> dict[str, float | None]:
        low, high = _intervals(samples.reshape(-1, 1), level)
        return _summary(point_value, float(low[0]), float(high[0]))

    result: dict[str, Any] = {
        "units": n_units,
        "answers": n_answers,
        "n_annotators": len(annotators),
        "labels_in_play": n_lab,
        "label_universe": len(set(labels)),
        "distinct_answers": n_values,
        "masi_units": masi_units,  # units alpha-MASI and the mean MASI were computed on (a sample above the cap)
        "gold_units": sum(1 for g, rows in zip(gold_sets, answers, strict=True) if g is not None and rows),
        "cohen_applies": cohen_applies,
        "equal_answers": bool(n_units and np.all(m == m[0])),
        "fleiss_rule": FLEISS_RULE,
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": level},
        "overall": {
            "alpha_masi": overall(float(alpha_masi[0]), alpha_masi[1:]),
            "alpha_macro": overall(macro, macro_b),
            "ac1_pooled": overall(pooled, pooled_b),
            "masi_mean": overall(float(masi_mean[0]), masi_mean[1:]),
        },
        "labels": label_rows,
    }
    result["annotators"] = _per_annotator(answers, gold_sets, agree_units, rng, n_boot, level)
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _bootstrap_mean(values: dict[str, np.ndarray], rng: np.random.Generator, n_boot: int) -> dict[str, np.ndarray]:
    """Weighted sums of per-unit values under bootstrap weights over those units: {name: (B,)}."""
    n = len(next(iter(values.values())))
    if n < 2 or n_boot == 0:
        return {name: np.zeros(0) for name in values}
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (B, n)
    return {name: weights @ v for name, v in values.items()}


def _per_annotator(
    answers: list[list[tuple[Hashable, frozenset[int]]]],
    gold_sets: list[frozenset[int] | None],
    agree_units: list[int],
    rng: np.random.Generator,
    n_boot: int,
    level: float,
) -> list[dict[str, Any]]:
    """Each annotator against the others (mean pairwise MASI over shared units) and against gold."""
    others: dict[str, list[float]] = {}
    for index in agree_units:
        rows = answers[index]
        for i, (annotator, own) in enumerate(rows):
            scores = [masi(own, other) for j, (_, other) in enumerate(rows) if j != i]
            others.setdefault(str(annotator), []).append(float(np.mean(scores)))
    versus_gold: dict[str, list[tuple[float, int, int, int]]] = {}
    for rows, gold_set in zip(answers, gold_sets, strict=True):
        if gold_set is None:
            continue
        for annotator, own in rows:
            versus_gold.setdefault(str(annotator), []).append(
                (masi(own, gold_set), len(own & gold_set), len(own), len(gold_set))
            )

    def interval(point: float, samples: np.ndarray) -> dict[str, float | None]:
        low, high = _intervals(samples.reshape(-1, 1), level)
        return _summary(point, float(low[0]), float(high[0]))

    details = []
    for annotator in sorted(set(others) | set(versus_gold)):
        entry: dict[str, Any] = {"annotator": annotator, "units": len(others.get(annotator, [])), "vs_others": None}
        if annotator in others:
            values = np.array(others[annotator])
            boot = _bootstrap_mean({"masi": values}, rng, n_boot)
            entry["vs_others"] = {
                "units": len(values),
                "masi": interval(float(values.mean()), boot["masi"] / len(values)),
            }
        entry["vs_gold"] = None
        if annotator in versus_gold:
            table = np.array(versus_gold[annotator], dtype=np.float64)  # (G, 4): masi, tp, |answer|, |gold|
            names = ("masi", "tp", "answered", "gold")
            boot = _bootstrap_mean({name: table[:, i] for i, name in enumerate(names)}, rng, n_boot)
            g = len(table)
            tp, answered, gold_n = table[:, 1].sum(), table[:, 2].sum(), table[:, 3].sum()
            entry["vs_gold"] = {
                "units": g,
                "masi": interval(float(table[:, 0].mean()), boot["masi"] / g),
                "precision": interval(float(_divide(tp, answered)), _divide(boot["tp"], boot["answered"])),
                "recall": interval(float(_divide(tp, gold_n)), _divide(boot["tp"], boot["gold"])),
                "f1": interval(
                    float(_divide(2 * tp, answered + gold_n)), _divide(2 * boot["tp"], boot["answered"] + boot["gold"])
                ),
            }
        details.append(entry)
    return details
