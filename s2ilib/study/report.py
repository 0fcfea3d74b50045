"""What the notebooks record and conclude: the ``results.json`` sections they write and the
paper's claims checked on our numbers. Every entry carries its preset, seed and variant
(:func:`s2ilib.study.paths.provenance`) and is keyed by its run folder's name, so a variant's
numbers (``one_stage@gan.steps=8``) sit beside the baseline's instead of replacing them."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from s2ilib.core import registry
from s2ilib.evaluation import stats
from s2ilib.core.config import StudyConfig
from s2ilib.study.paths import RunPaths, entry_name, provenance

# ------------------------------------------------------------------------------------------------
# the paper's claims (Table II), each decided from an interval


REFERENCE = ("one_stage", "seen")  # the direct model with the TTS voices it was trained on
TEXT_REF = ("text", registry.TEXT_CONDITION)
AUTHORS_REF = ("one_stage_authors", "seen")  # the same speech embeddings through the authors' GAN recipe
ATTR_MARGIN = 0.05  # "close" on attribute accuracy: the difference lies within +-0.05
KID_REL_MARGIN = 0.2  # "close" on KID: within +-20% of the other method's KID


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim checked on the main table.

    ``rule``: ``higher`` / ``lower`` (ours better than other: the 95% interval of ours - other lies
    wholly on the claimed side of 0 -> holds, wholly on the other side -> fails, else undecided);
    ``close`` (|ours - other| <= margin: holds if the whole interval lies within +-margin, fails if
    it lies wholly outside, else undecided); ``above_chance`` (R-precision minus its chance
    1 / candidates; 0/1 hits by the exact binomial test and Clopper-Pearson interval,
    :func:`s2ilib.evaluation.stats.above_chance`). ``metric_other``: the other side's column when it is not ``metric`` (the
    shuffled floor of the same images). ``margin``: absolute, or relative to the other side's
    value with ``relative``. Per-item metrics (attr_acc, r_precision) are compared on the same
    utterances (paired bootstrap over test images, sign-flip p-value); KID by its subset interval
    (unpaired), with the FID and its real-vs-real floor in ``note``."""

    name: str
    metric: str
    ours: tuple[str, str]
    other: tuple[str, str] | None
    rule: str
    metric_other: str | None = None
    margin: float | None = None
    relative: bool = False
    # Only checked when the other side was evaluated (the authors'-recipe row exists only where the
    # preset trains one_stage with another recipe); otherwise the claim is left out, not "undecided".
    optional: bool = False


CLAIMS: tuple[Claim, ...] = (
    Claim("one-stage KID below two-stage KID", "kid", REFERENCE, ("two_stage", "seen"), "lower"),
    Claim("one-stage KID below classifier-based KID", "kid", REFERENCE, ("classifier", "seen"), "lower"),
    Claim("one-stage KID close to text upper bound (within 20%)", "kid", REFERENCE, TEXT_REF, "close",
          margin=KID_REL_MARGIN, relative=True),
    Claim("one-stage unseen voices close to seen voices (KID within 20%)", "kid", ("one_stage", "unseen"), REFERENCE,
          "close", margin=KID_REL_MARGIN, relative=True),
    Claim("one-stage attribute accuracy above two-stage", "attr_acc", REFERENCE, ("two_stage", "seen"), "higher"),
    Claim("one-stage attribute accuracy above classifier-based", "attr_acc", REFERENCE, ("classifier", "seen"),
          "higher"),
    Claim("one-stage attribute accuracy above the shuffled-speech floor", "attr_acc", REFERENCE, REFERENCE, "higher",
          metric_other="attr_acc_shuffled"),
    Claim(f"one-stage attribute accuracy close to text upper bound (within {ATTR_MARGIN})", "attr_acc", REFERENCE,
          TEXT_REF, "close", margin=ATTR_MARGIN),
    Claim(f"one-stage unseen voices close to seen voices (attribute accuracy within {ATTR_MARGIN})", "attr_acc",
          ("one_stage", "unseen"), REFERENCE, "close", margin=ATTR_MARGIN),
    Claim("one-stage R-precision above chance", "r_precision", REFERENCE, None, "above_chance"),
    Claim("one-stage attribute accuracy above the authors' GAN recipe", "attr_acc", REFERENCE, AUTHORS_REF, "higher",
          optional=True),
    Claim("one-stage R-precision above the authors' GAN recipe", "r_precision", REFERENCE, AUTHORS_REF, "higher",
          optional=True),
)
CLAIM_COLUMNS = ["dataset", "claim", "metric", "rule", "comparison", "margin", "ours", "other", "estimate", "low",
                 "high", "p_value", "p_rule", "p_holm", "n", "n_groups", "verdict", "note"]
VERDICTS = ("holds", "fails", "undecided")
_NAN = float("nan")


def _cell(res: dict[str, Any], where: tuple | None) -> dict[str, Any]:
    if where is None:
        return {}
    method, cond = where
    return (res.get(method) or {}).get(cond) or {}


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return _NAN
    return float(v)


def margin_verdict(low: float, high: float, margin: float) -> str:
    """Verdict of "|difference| <= margin" from the difference's interval [low, high] (no test):
    :func:`s2ilib.evaluation.stats.decide` with rule ``close``; ``undecided`` when anything is NaN."""
    if any(math.isnan(v) for v in (low, high, margin)):
        return "undecided"
    if low > high:
        raise ValueError(f"margin_verdict: low ({low}) is above high ({high})")
    return stats.decide("close", low, high, margin=margin)


def _interval(cell: dict[str, Any], metric: str) -> "stats.Interval | None":
    """A stored cell's metric with its interval (``<metric>_ci``) as a stats.Interval."""
    est, ci = _num(cell.get(metric)), cell.get(f"{metric}_ci")
    if math.isnan(est) or not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    low, high = _num(ci[0]), _num(ci[1])
    if math.isnan(low) or math.isnan(high):
        return None
    n = int(cell.get(f"{metric}_n") or cell.get("n_images") or 0)
    return stats.Interval(est, low, high, n, int(cell.get(f"{metric}_n_groups") or n), 0.95, "stored")


def _difference(claim: Claim, res: dict[str, Any], items: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The interval of ours - other for one claim and how it was made."""
    from s2ilib.evaluation.items import paired_comparison

    ours, other = _cell(res, claim.ours), _cell(res, claim.other)
    m_other = claim.metric_other or claim.metric
    empty = {"estimate": _NAN, "low": _NAN, "high": _NAN, "p_value": _NAN, "n": 0, "n_groups": 0}
    if claim.rule == "above_chance":
        chance = _num(ours.get("r_precision_chance"))
        key = "/".join(claim.ours)
        if key in items and claim.metric in items[key] and not math.isnan(chance):
            col = items[key]
            hits = np.asarray(col[claim.metric], dtype=float)
            hits = hits[~np.isnan(hits)]
            if len(hits) and np.all((hits == 0) | (hits == 1)):  # top-1 hits: exact binomial against chance
                return stats.above_chance(hits, chance), "exact binomial vs chance"
            return paired_comparison(col, {**col, "chance": np.full(len(col[claim.metric]), chance)}, claim.metric,
                                     metric_b="chance"), "paired vs chance"
        iv = _interval(ours, claim.metric)
        if iv is None or math.isnan(chance):
            return empty, "not measured"
        return {"estimate": iv.estimate - chance, "low": iv.low - chance, "high": iv.high - chance,
                "p_value": _NAN, "n": iv.n, "n_groups": iv.n_groups}, "interval vs chance"
    if claim.metric in ("attr_acc", "r_precision"):
        ka, kb = "/".join(claim.ours), "/".join(claim.other)
        if ka in items and kb in items:
            d = paired_comparison(items[ka], items[kb], claim.metric, metric_b=m_other)
            if d["n"] >= 2:
                return d, "paired"
        a, b = _interval(ours, claim.metric), _interval(other, m_other)
        if a is not None and b is not None:  # no per-item scores: conservative unpaired difference
            return stats.unpaired_difference(a, b), "unpaired (no per-item scores)"
        return empty, "not measured"
    a, b = _interval(ours, claim.metric), _interval(other, m_other)  # KID: subset intervals
    if a is None or b is None:
        return empty, "not measured"
    return stats.unpaired_difference(a, b), "unpaired (KID subsets)"


def _fid_note(claim: Claim, res: dict[str, Any]) -> str:
    if claim.metric not in ("kid", "fid"):
        return ""
    floor = res.get("fid_floor") or {}
    parts = []
    for where in (claim.ours, claim.other):
        c = _cell(res, where)
        if not math.isnan(_num(c.get("fid"))):
            parts.append(f"FID {'/'.join(where)} {c['fid']:.1f} (N={c.get('fid_n')}), "
                         f"half {_num(c.get('fid_half')):.1f} (n={c.get('fid_half_n')})")
    if not math.isnan(_num(floor.get("fid"))):
        parts.append(f"real-vs-real floor FID {floor['fid']:.1f}, KID {_num(floor.get('kid')):.4f} "
                     f"(n={floor.get('n_b')})")
    return "; ".join(parts)


def claim_rows(res: dict[str, Any], items: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The claims on one dataset's main table (a run_main_evaluation result) and its per-item
    scores (``items``: {"method/condition": columns}, :func:`s2ilib.evaluation.items.load_items`;
    without them per-item metrics fall back to an unpaired difference of their stored intervals).
    One dict per claim: claim, metric, rule, comparison, margin, ours, other (point values),
    estimate / low / high of ours - other (95%), p_value, n, n_groups, verdict (holds / fails /
    undecided, from the interval, with the test's p_value below 0.05 where there is one:
    :func:`s2ilib.evaluation.stats.verdict`) and note (FIDs and the real-vs-real floor)."""
    items = items or {}
    rows = []
    for claim in CLAIMS:
        if claim.optional and not _cell(res, claim.other):
            continue
        diff, how = _difference(claim, res, items)
        ours = _num(_cell(res, claim.ours).get(claim.metric))
        if claim.rule == "above_chance":
            other = _num(_cell(res, claim.ours).get("r_precision_chance"))
        else:
            other = _num(_cell(res, claim.other).get(claim.metric_other or claim.metric))
        margin = claim.margin
        if margin is not None and claim.relative:
            margin = claim.margin * abs(other) if not math.isnan(other) else _NAN
        low, high = _num(diff["low"]), _num(diff["high"])
        if claim.rule == "close":
            verdict = margin_verdict(low, high, margin)
        else:
            # above chance: an exact interval with a one-sided p-value; else the two-sided test must agree
            p = _NAN if claim.rule == "above_chance" else _num(diff.get("p_value", _NAN))
            verdict = stats.verdict(low, high, -1 if claim.rule == "lower" else 1, p)
        rows.append({"claim": claim.name, "metric": claim.metric, "rule": claim.rule, "comparison": how,
                     "margin": _NAN if margin is None else margin, "ours": ours, "other": other,
                     "estimate": _num(diff["estimate"]), "low": low, "high": high,
                     "p_value": _num(diff.get("p_value", _NAN)), "n": int(diff.get("n") or 0),
                     "n_groups": int(diff.get("n_groups") or 0), "verdict": verdict, "note": _fid_note(claim, res)})
    return rows


def load_items(main: dict[str, dict[str, Any]], paths: RunPaths) -> dict[str, dict[str, Any]]:
    """{dataset: {"method/condition": per-item columns}} of the evaluations in ``main``."""
    from s2ilib.evaluation.items import load_items as _load

    return {name: _load(paths.eval(name)) for name in main}


def paper_claims(main: dict[str, dict[str, Any]], items: dict[str, dict[str, Any]] | None = None):
    """The paper's Table II claims checked on our results: DataFrame with :data:`CLAIM_COLUMNS`
    (dataset, claim, metric, rule, comparison, margin, ours, other, estimate, low, high, p_value,
    p_rule, p_holm, n, n_groups, verdict, note), decided by :func:`s2ilib.study.claims.finalize`
    (the rule's p-value, Holm over the file's rows).

    ``main``: {dataset: run_main_evaluation result}; ``items``: {dataset: per-item scores}
    (:func:`load_items`). A verdict is read from the 95% interval of the difference, never from
    the point values: attribute accuracy and R-precision are compared on the same utterances,
    KID by its subset intervals (lower is better) with the FID and its floor stated.
    """
    import pandas as pd

    from s2ilib.study.claims import finalize

    items = items or {}
    rows = [{"dataset": name, **row} for name, res in main.items() for row in claim_rows(res, items.get(name))]
    base = [c for c in CLAIM_COLUMNS if c not in ("p_rule", "p_holm")]
    return finalize(pd.DataFrame(rows, columns=base))[CLAIM_COLUMNS]


def claims_summary(claims) -> dict[str, str]:
    """{dataset: one markdown line naming the claims that hold, fail and are undecided}."""
    out = {}
    for name in dict.fromkeys(claims["dataset"]):
        sub = claims[claims["dataset"] == name]
        parts = [f"{v}: " + ("; ".join(sub[sub["verdict"] == v]["claim"]) or "none") for v in VERDICTS]
        out[name] = f"**{name}** -- " + ". ".join(parts) + "."
    return out


# ------------------------------------------------------------------------------------------------
# results.json sections


def data_payload(sizes: dict[str, dict], timings: dict[str, dict], cfg: StudyConfig,
                 paths: RunPaths, splits: dict[str, dict] | None = None) -> dict[str, Any]:
    """``data`` section: {dataset folder: sizes, build times, provenance, and ``validation``: the
    validation classes that ``split=val`` holds out (``splits``, :func:`stages.validation_split`)}."""
    return {entry_name(paths.data(name)): {**sizes[name], **timings.get(name, {}), **provenance(cfg, cfg.data),
                                           **({"validation": splits[name]} if splits and name in splits else {})}
            for name in sizes}


def _split_key(key: tuple) -> tuple[str, str, str | None]:
    name, what, *method = key
    return name, what, (method[0] if method else None)


def encoders_payload(summaries: dict[tuple, dict], retrieval: dict[str, dict], cfg: StudyConfig,
                     paths: RunPaths) -> dict[str, Any]:
    """``encoders`` section: dataset -> encoder folder -> condition -> metric, with training time,
    steps/s, how it was evaluated and provenance. ``summaries``: {(dataset, kind[, method]): train
    summary}; ``retrieval``: {dataset: encoder_retrieval result} (of the run's own encoders)."""
    from s2ilib.study.analysis import needs_probe

    payload: dict[str, Any] = {}
    for key, s in summaries.items():
        name, kind, method = _split_key(key)
        run_cfg = paths.config_for(method) or cfg
        entry: dict[str, Any] = dict(retrieval.get(name, {}).get(kind, {})) if method is None else {}
        entry.update({k: s.get(k) for k in ("train_seconds", "steps", "steps_per_s", "n_params",
                                             "n_train_items", "bf16", "device")})
        entry.update({"encoder": kind, "method": method,
                      "evaluated_via": "linear_probe" if needs_probe(kind) else "direct",
                      **provenance(run_cfg, run_cfg.encoder), **_trained_by(s)})
        payload.setdefault(name, {})[entry_name(paths.encoder(name, kind, method))] = entry
    return payload


def encoder_comparison(retrieval: dict[str, dict], ours: str = "one_stage", other: str = "classifier") -> list[str]:
    """Markdown lines: is ``ours``'s encoder better than ``other``'s on recall@10 and mAP, per
    dataset and voice condition (the paper's first claim)?"""
    a, b = registry.method(ours).encoder, registry.method(other).encoder
    lines = []
    for name, res in retrieval.items():
        ts, cls = res.get(a, {}), res.get(b, {})
        for cond in registry.SPEECH_CONDITIONS:
            if cond in ts and cond in cls:
                better = all(ts[cond][m] > cls[cond][m] for m in ("recall@10", "map_class"))
                lines.append(
                    f"**{name}, {cond} voices**: {a} recall@10 {ts[cond]['recall@10']:.3f} / mAP "
                    f"{ts[cond]['map_class']:.3f} vs {b} {cls[cond]['recall@10']:.3f} / "
                    f"{cls[cond]['map_class']:.3f} (chance recall@10 {ts[cond]['chance']['recall@10']:.3f}): "
                    f"{a} is {'better on both' if better else 'NOT better on both'}.")
    return lines


def _trained_by(summary: dict[str, Any]) -> dict[str, Any]:
    """Whether the notebook reused the run folder, and the commit and machine that trained it."""
    return {k: summary[k] for k in ("reused", "trained_by", "trained_by_note") if k in summary}


def generators_payload(summaries: dict[tuple, dict], cfg: StudyConfig, paths: RunPaths,
                       extras: dict[str, dict[str, dict]] | None = None) -> dict[str, Any]:
    """``generators`` section: dataset -> generator folder -> steps, time, final losses, sizes,
    provenance. ``summaries``: {(dataset, method): train summary}; ``extras``: {name: {dataset:
    dict}} added to the reference method's entry (``latency``, ``variation``)."""
    payload: dict[str, Any] = {}
    for (name, method), s in summaries.items():
        run_cfg = paths.config_for(method) or cfg
        entry = {k: s.get(k) for k in ("steps", "train_seconds", "steps_per_s", "final", "sizes", "bf16",
                                        "device", "n_train_images", "n_conditions")}
        entry.update({"method": method, "encoder": registry.method(method).encoder})
        if method == REFERENCE[0]:
            entry.update({k: v[name] for k, v in (extras or {}).items() if name in v})
        entry.update({**provenance(run_cfg, run_cfg.gan), **_trained_by(s)})
        payload.setdefault(name, {})[entry_name(paths.gan(name, method))] = entry
    return payload


def reference_table(main: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{dataset: the references' numbers}: attribute reader (ceiling with its 95% interval, and
    floor), IS head, the real-vs-real FID / KID floor (two disjoint halves of the real test images,
    n each) and the ASR WER."""
    out = {}
    for name, m in main.items():
        reader = m.get("reader") or {}
        floor = m.get("fid_floor") or {}
        ci = reader.get("real_test_attr_acc_ci") or [None, None]
        kci = floor.get("kid_ci") or [None, None]
        out[name] = {"reader held-out accuracy": reader.get("holdout_mean"),
                     "reader on real test images (matched)": reader.get("real_test_attr_acc"),
                     "  95% interval": f"[{_f(ci[0])}, {_f(ci[1])}]",
                     "reader on real test images (shuffled)": reader.get("real_test_attr_acc_shuffled"),
                     "IS head held-out accuracy": (m.get("is_head") or {}).get("holdout_accuracy"),
                     "FID real vs real (floor)": floor.get("fid"),
                     "KID real vs real (floor)": floor.get("kid"),
                     "  KID floor 95% interval": f"[{_f(kci[0], 4)}, {_f(kci[1], 4)}]",
                     "  n per half": floor.get("n_b"),
                     **{f"WER {c}": w for c, w in ((m.get("asr") or {}).get("wer") or {}).items()}}
    return out


def _f(v: Any, digits: int = 3) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: a number not measured is stored as null."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main_payload(main: dict[str, dict[str, Any]], methods, cfg: StudyConfig, paths: RunPaths,
                 items: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``main`` section: evaluation folder -> method -> condition -> metric (with the 95% intervals
    ``<metric>_ci`` and their n), with the references, the real-vs-real FID / KID floor, query
    sizes, timings, the claims (each with its interval and verdict) and provenance. ``items``:
    per-item scores for the paired claims (default: read from each evaluation folder)."""
    items = load_items(main, paths) if items is None else items
    payload: dict[str, Any] = {}
    for name, m in main.items():
        entry: dict[str, Any] = {meth: m[meth] for meth in methods}
        entry.update({k: m.get(k) for k in ("reader", "is_head", "asr", "fid_floor", "queries", "timings")})
        if m.get("skipped_metrics"):  # e.g. attribute metrics on a dataset without attribute labels (Places)
            entry["skipped_metrics"] = m["skipped_metrics"]
        entry.update({"dataset": name, "methods": list(methods), "claims": _nan_to_none(claim_rows(m, items.get(name))),
                      **provenance(cfg, cfg.eval)})
        payload[entry_name(paths.eval(name))] = entry
    return payload
