"""What the notebooks record and conclude: the ``results.json`` sections they write and the
paper's claims checked on our numbers. Every entry carries its preset, seed and variant
(:func:`s2ilib.study.paths.provenance`) and is keyed by its run folder's name, so a variant's
numbers (``one_stage@gan.steps=8``) sit beside the baseline's instead of replacing them."""
from __future__ import annotations

import math
from typing import Any

from s2ilib.core import registry
from s2ilib.core.config import StudyConfig
from s2ilib.study.paths import RunPaths, entry_name, provenance

# ------------------------------------------------------------------------------------------------
# the paper's claims (Table II)

REFERENCE = ("one_stage", "seen")  # the direct model with the TTS voices it was trained on
# (claim, metric, ours (method, condition), other (method, condition), rule). ``other`` may name
# a metric suffix instead of a condition: ("one_stage", "seen", "_shuffled") reads attr_acc_shuffled.
CLAIMS: tuple[tuple[str, str, tuple, tuple, str], ...] = (
    ("one-stage FID below two-stage FID", "fid", REFERENCE, ("two_stage", "seen"), "lower"),
    ("one-stage FID below classifier-based FID", "fid", REFERENCE, ("classifier", "seen"), "lower"),
    ("one-stage FID close to text upper bound (within 20%)", "fid", REFERENCE,
     ("text", registry.TEXT_CONDITION), "close"),
    ("one-stage attribute accuracy above two-stage", "attr_acc", REFERENCE, ("two_stage", "seen"), "higher"),
    ("one-stage attribute accuracy above classifier-based", "attr_acc", REFERENCE, ("classifier", "seen"), "higher"),
    ("one-stage attribute accuracy above the shuffled-speech floor", "attr_acc", REFERENCE,
     ("one_stage", "seen", "_shuffled"), "higher"),
    ("one-stage unseen voices within 20% of seen voices (FID)", "fid", ("one_stage", "unseen"), REFERENCE, "close"),
)
CLOSE = 0.2  # "close": within 20% of the other number
VERDICTS = {True: "holds", False: "does not hold", None: "not measured"}


def _number(res: dict[str, Any], where: tuple, metric: str) -> float | None:
    method, cond, *suffix = where
    v = res.get(method, {}).get(cond, {}).get(metric + (suffix[0] if suffix else ""))
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def judge(ours: float | None, other: float | None, rule: str) -> bool | None:
    """``lower`` / ``higher``: ours below / above other; ``close``: within 20% of other; None if missing."""
    if ours is None or other is None:
        return None
    if rule == "lower":
        return ours < other
    if rule == "higher":
        return ours > other
    if rule == "close":
        return abs(ours - other) <= CLOSE * abs(other)
    raise ValueError(f"unknown rule {rule!r}")


def claim_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims on one dataset's main table (a run_main_evaluation result): one dict per claim with
    ``claim, metric, ours, other, rule, holds`` (True / False / None) and ``verdict`` (text)."""
    rows = []
    for claim, metric, mine, theirs, rule in CLAIMS:
        ours, other = _number(res, mine, metric), _number(res, theirs, metric)
        holds = judge(ours, other, rule)
        rows.append({"claim": claim, "metric": metric, "ours": ours, "other": other, "rule": rule,
                     "holds": holds, "verdict": VERDICTS[holds]})
    return rows


def paper_claims(main: dict[str, dict[str, Any]]):
    """The paper's Table II claims checked on our results: DataFrame (dataset, claim, metric, ours,
    other, rule, holds, verdict).

    ``main``: {dataset: run_main_evaluation result}. Lower FID is better; higher attribute
    accuracy is better. Seen-voice speech is compared (the paper used its TTS voices).
    """
    import pandas as pd

    cols = ["dataset", "claim", "metric", "ours", "other", "rule", "holds", "verdict"]
    rows = [{"dataset": name, **row} for name, res in main.items() for row in claim_rows(res)]
    return pd.DataFrame(rows, columns=cols)


def claims_summary(claims) -> dict[str, str]:
    """{dataset: one markdown line naming the claims that hold and those that do not}."""
    out = {}
    for name in dict.fromkeys(claims["dataset"]):
        sub = claims[claims["dataset"] == name]
        held = "; ".join(sub[sub["verdict"] == VERDICTS[True]]["claim"]) or "none"
        failed = "; ".join(sub[sub["verdict"] == VERDICTS[False]]["claim"]) or "none"
        out[name] = f"**{name}**: holds: {held}. Does not hold: {failed}."
    return out


# ------------------------------------------------------------------------------------------------
# results.json sections


def data_payload(sizes: dict[str, dict], timings: dict[str, dict], cfg: StudyConfig,
                 paths: RunPaths) -> dict[str, Any]:
    """``data`` section: {dataset folder: sizes, build times, provenance}."""
    return {entry_name(paths.data(name)): {**sizes[name], **timings.get(name, {}), **provenance(cfg, cfg.data)}
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
                      **provenance(run_cfg, run_cfg.encoder)})
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
        entry.update(provenance(run_cfg, run_cfg.gan))
        payload.setdefault(name, {})[entry_name(paths.gan(name, method))] = entry
    return payload


def reference_table(main: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{dataset: the references' numbers}: attribute reader (ceiling and floor), IS head, ASR WER."""
    out = {}
    for name, m in main.items():
        reader = m.get("reader") or {}
        out[name] = {"reader held-out accuracy": reader.get("holdout_mean"),
                     "reader on real test images (matched)": reader.get("real_test_attr_acc"),
                     "reader on real test images (shuffled)": reader.get("real_test_attr_acc_shuffled"),
                     "IS head held-out accuracy": (m.get("is_head") or {}).get("holdout_accuracy"),
                     **{f"WER {c}": w for c, w in ((m.get("asr") or {}).get("wer") or {}).items()}}
    return out


def main_payload(main: dict[str, dict[str, Any]], methods, cfg: StudyConfig, paths: RunPaths) -> dict[str, Any]:
    """``main`` section: evaluation folder -> method -> condition -> metric, with the references,
    query sizes, timings, the claims (each with its verdict) and provenance."""
    payload: dict[str, Any] = {}
    for name, m in main.items():
        entry: dict[str, Any] = {meth: m[meth] for meth in methods}
        entry.update({k: m.get(k) for k in ("reader", "is_head", "asr", "queries", "timings")})
        entry.update({"dataset": name, "methods": list(methods), "claims": claim_rows(m),
                      **provenance(cfg, cfg.eval)})
        payload[entry_name(paths.eval(name))] = entry
    return payload
