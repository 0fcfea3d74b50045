"""Conditions the encoders never heard, and the speech of notebook 08 under them.

A condition (:func:`all_conditions`) is ``clean`` (the main table's espeak utterances, training
voices, re-synthesised), ``piper`` (the same captions spoken by the neural voice of
:mod:`s2ilib.speech.piper`), or a perturbation of the clean utterance from
:mod:`s2ilib.speech.perturb`: ``<white|pink|babble>_<snr>db`` (babble made from test utterances of
other images, :func:`babble_rows`), ``reverb`` (one of :data:`ROOMS` simulated rooms per utterance),
``rate_0.8`` / ``rate_1.2``. Every wave is deterministic under the seed (:func:`condition_wave`).

Per (dataset, condition) the waves of the queries' utterances are featurised exactly as the
dataset's store (:func:`s2ilib.speech.features.logmel` with the data config, float16) and cached
as a :class:`~s2ilib.speech.features.FeatureStore` in
``runs/<preset>/robustness/<data folder>/<condition>/`` under :func:`condition_key` (the dataset's
speech store key, the condition, the utterances, the engine voice, the versions), which
:func:`condition_store` reuses instead of synthesising again.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from s2ilib.core.io import atomic_write_text, staging_dir
from s2ilib.speech import perturb
from s2ilib.data.validation import record_splits

ROBUSTNESS_VERSION = 1  # bump when the waves or the scoring of a condition change
ENGINE_CONDITIONS = ("piper",)  # another TTS engine instead of a perturbation of the espeak utterance
ROOMS = 4  # simulated rooms of the reverb condition (each costs ~1 s to simulate); an utterance picks one
BABBLE_POOL = 16  # test utterances of other images that babble is made from


def all_conditions() -> list[str]:
    """``clean``, ``piper``, every noise at every SNR, ``reverb`` and the rates, in plotting order."""
    return ["clean", *ENGINE_CONDITIONS, *perturb.condition_names(("noise", "reverb", "rate"))]


def family(cond: str) -> str:
    """``engine`` for another TTS engine, else the perturbation family (clean, noise, reverb, rate)."""
    return "engine" if cond in ENGINE_CONDITIONS else perturb.condition(cond).family


def needs_others(cond: str) -> bool:
    """Whether ``cond`` is made from other utterances (babble)."""
    return family(cond) == "noise" and perturb.condition(cond).needs_others


def _hash(*parts: Any) -> int:
    blob = "\n".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") % 2**31


# ------------------------------------------------------------------------------------------------
# the utterances and their waves


def robustness_queries(ds, cfg, n: int):
    """The first ``n`` of the main table's ``seen`` queries in :func:`fid_subset` order (a fixed
    random subset, the one notebook 04's ASR subset starts with), sorted as the main table."""
    from s2ilib.evaluation import items as IT
    from s2ilib.evaluation.main import method_queries
    from s2ilib.evaluation.scoring import fid_subset

    q = method_queries(ds, "one_stage", "seen", cfg.eval, cfg.seed)
    keep = np.sort(fid_subset(IT.query_ids(q), int(n), cfg.seed))
    return q.iloc[keep].reset_index(drop=True)


def babble_rows(ds, queries, seed: int, n: int = BABBLE_POOL) -> list[int]:
    """Store rows of ``n`` seen test utterances of images the queries do not show (drawn with
    ``seed``): the talkers of the babble condition. Falls back to other utterances of any test image
    when too few images are left (tiny test sets)."""
    idx = ds.speech.index
    test = idx[(idx["condition"] == "seen") & (record_splits(ds, idx) == "test")]
    pool = test[~test["image_idx"].isin(set(queries["image_idx"]))]
    if len(pool) < perturb.BABBLE_TALKERS:
        pool = test[~test.index.isin(set(queries["row"]))]
    rng = np.random.default_rng([int(seed), 8])
    return sorted(int(r) for r in rng.choice(pool.index.to_numpy(), size=min(n, len(pool)), replace=False))


def source_wave(ds, row: int, cond: str, sr: int) -> np.ndarray:
    """The unperturbed wave of store row ``row``: its espeak utterance re-synthesised, or the same
    caption spoken by another engine (``piper``)."""
    from s2ilib.data.spoken import speak_utterance

    if cond == "piper":
        from s2ilib.speech.piper import default_voice
        from s2ilib.speech.tts import get_engine

        return get_engine("piper").synthesize(str(ds.speech.index.iloc[int(row)]["text"]), default_voice(), sr=sr)
    return speak_utterance(ds, int(row), sr=sr)


def condition_wave(ds, row: int, cond: str, seed: int, sr: int, others: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Store row ``row`` under ``cond`` at ``sr`` Hz, deterministic in ``seed``: the noise is drawn from
    (seed, utterance, condition), the room from one of :data:`ROOMS` per utterance."""
    wave = source_wave(ds, row, cond, sr)
    if family(cond) in ("engine", "clean"):
        return perturb.apply_condition(wave, "clean", 0, sr)
    utt = str(ds.speech.index.iloc[int(row)]["utt_id"])
    if family(cond) == "reverb":
        cseed = _hash(seed, "room", _hash(seed, utt, "room") % ROOMS)
    else:
        cseed = _hash(seed, utt, cond)
    return perturb.apply_condition(wave, cond, cseed, sr, others=others)


def condition_key(ds, cfg, cond: str, utt_ids: Sequence[str]) -> dict[str, Any]:
    """What a condition's features depend on: the dataset's speech store key (data, voices, seed),
    the condition, the utterances, the engine voice and the versions of this module and the features."""
    from s2ilib.data.spoken import FEATURE_VERSION, cache_key

    key = {"version": ROBUSTNESS_VERSION, "feature_version": FEATURE_VERSION, "condition": cond,
           "store": cache_key(ds, cfg.data, cfg.seed), "rooms": ROOMS, "babble_pool": BABBLE_POOL,
           "utterances": hashlib.sha256("\n".join(map(str, utt_ids)).encode()).hexdigest()[:16]}
    if cond == "piper":
        from s2ilib.speech.piper import default_voice

        key["voice"] = default_voice().id
    return key


def robustness_dir(paths, dataset: str) -> Path:
    """``runs/<preset>/robustness/<data folder>/``: the perturbed speech depends on the data only."""
    return paths.run / "robustness" / paths.data(dataset).name


def _open_store(folder: Path, key: dict[str, Any]):
    from s2ilib.speech.features import FeatureStore, FeatureStoreError

    try:
        blob = json.loads((folder / "config.json").read_text())
        return FeatureStore.open(folder) if blob.get("key") == json.loads(json.dumps(key)) else None
    except (OSError, json.JSONDecodeError, FeatureStoreError):
        return None


def condition_store(ds, cfg, paths, queries, cond: str, others: Callable[[], list[np.ndarray]],
                    progress: bool = False) -> tuple[Any, dict[str, np.ndarray]]:
    """(FeatureStore of the queries' utterances under ``cond``, {utt_id: wave} made by this call).

    Cached in ``robustness_dir/<cond>/`` under :func:`condition_key`: a hit returns ``{}`` waves
    (nothing is synthesised). ``others()``: the babble sources (called only for babble)."""
    from tqdm.auto import tqdm

    from s2ilib.speech.features import FeatureStoreWriter, logmel

    d = cfg.data
    utts = queries.drop_duplicates("utt_id")
    key = condition_key(ds, cfg, cond, list(utts["utt_id"]))
    folder = robustness_dir(paths, ds.name) / cond
    store = _open_store(folder, key)
    if store is not None:
        return store, {}
    sources = others() if needs_others(cond) else ()
    waves, t0 = {}, time.perf_counter()
    with staging_dir(folder) as tmp:
        writer = FeatureStoreWriter(tmp, n_mels=d.n_mels)
        for r in tqdm(utts.itertuples(), total=len(utts), desc=f"speech {cond}", disable=not progress):
            wave = condition_wave(ds, r.row, cond, cfg.seed, d.sample_rate, sources)
            waves[str(r.utt_id)] = wave
            feat = logmel(wave, sr=d.sample_rate, n_mels=d.n_mels, min_frames=d.min_frames)
            writer.add(feat.astype(np.float16), utt_id=str(r.utt_id), image_idx=int(r.image_idx),
                       caption_idx=int(r.caption_idx), voice=_voice_of(cond, r.voice), condition=cond,
                       split="test", text=str(r.text), duration_s=round(len(wave) / d.sample_rate, 3))
        writer.finalize()
        info = {"key": key, "utterances": len(utts), "seconds": time.perf_counter() - t0}
        atomic_write_text(tmp / "config.json", json.dumps(info, indent=1) + "\n")
    return _open_store(folder, key), waves


def _voice_of(cond: str, espeak_voice: str) -> str:
    if cond == "piper":
        from s2ilib.speech.piper import default_voice

        return default_voice().id
    return str(espeak_voice)
