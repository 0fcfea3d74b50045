"""Spoken captions for a dataset: synthesise every caption and store its log-mel features.

Conditions (index.csv ``condition``):

* ``seen``: every caption of every image (train and test), each utterance by a training voice
  drawn deterministically from the seed (so an image's 10 captions have varied voices);
* ``unseen``: for a fraction ``cfg.unseen_voice_fraction`` of the *test* images, every caption
  again by a held-out voice (accents and variants no training voice uses).

Work is split into fixed chunks of utterances, processed by ``cfg.workers`` processes (each with its
own espeak-ng engine: the library is not thread-safe); each worker synthesises, featurises and
returns float16 features; the parent writes the store. The store is built in ``<out>.partial`` and
moved into place when complete; a leftover ``.partial`` from an interrupted run is discarded.
One builder per store: the build holds ``<parent>/.<out name>.lock`` (:class:`s2ilib.core.runkit.RunLock`),
so a second builder is refused at once. Workers die with their parent (``PR_SET_PDEATHSIG``) and
the pool is terminated on any error or interrupt, so a killed study leaves no worker behind.
A finished store is reused when its ``config.json`` has the same key (config fields that change
the speech + seed + dataset fingerprint).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from s2ilib.core.config import DataConfig
from s2ilib.data.datasets import SpeechImageDataset
from s2ilib.speech.features import FeatureStore, FeatureStoreError, FeatureStoreWriter, clear_partial
from s2ilib.core.io import atomic_write_text, staging_dir
from s2ilib.core.runkit import die_with_parent, writer
from s2ilib.speech.tts import Voice, voice_pool

FEATURE_VERSION = 1  # bump when logmel() or the synthesis changes what a store contains
CHUNK = 48  # utterances per worker task
_KEY_FIELDS = ("tts_engine", "n_train_voices", "n_unseen_voices", "unseen_voice_fraction", "sample_rate",
               "n_mels", "min_frames", "keep_wav")


def cache_key(dataset: SpeechImageDataset, cfg: DataConfig, seed: int) -> dict:
    return {"data": {k: getattr(cfg, k) for k in _KEY_FIELDS}, "seed": int(seed),
            "dataset": dataset.fingerprint(), "n_images": len(dataset.images), "version": FEATURE_VERSION}


def plan_utterances(dataset: SpeechImageDataset, cfg: DataConfig, seed: int,
                    train_voices: list[Voice], unseen_voices: list[Voice]) -> list[dict]:
    """One dict per utterance (index fields + ``voice_obj``), in store order; deterministic in ``seed``."""
    rng = np.random.default_rng([int(seed), 7])
    plan = []
    for i, rec in enumerate(dataset.images):
        for c, text in enumerate(rec.captions):
            v = train_voices[int(rng.integers(len(train_voices)))]
            plan.append(dict(utt_id=f"s{i:06d}_{c:02d}", image_idx=i, caption_idx=c, voice=v.id,
                             condition="seen", split=rec.split, text=text, voice_obj=v))
    test = dataset.split("test")
    n_unseen = int(round(cfg.unseen_voice_fraction * len(test)))
    chosen = sorted(rng.choice(test, size=n_unseen, replace=False).tolist()) if n_unseen and unseen_voices else []
    for i in chosen:
        for c, text in enumerate(dataset.images[i].captions):
            v = unseen_voices[int(rng.integers(len(unseen_voices)))]
            plan.append(dict(utt_id=f"u{i:06d}_{c:02d}", image_idx=i, caption_idx=c, voice=v.id,
                             condition="unseen", split="test", text=text, voice_obj=v))
    return plan


def _speak_chunk(args) -> list[tuple[np.ndarray, float]]:
    """Worker: synthesise + featurise a chunk -> [(float16 (n_mels, T), duration s)]."""
    from s2ilib.speech.audio import save_wav
    from s2ilib.speech.features import logmel
    from s2ilib.speech.tts import get_engine

    items, engine_name, sr, n_mels, min_frames, wav_dir = args
    engine = get_engine(engine_name)
    out = []
    for utt_id, text, voice in items:
        wave = engine.synthesize(text, voice, sr=sr)
        if wav_dir:
            save_wav(Path(wav_dir) / f"{utt_id}.wav", wave, sr)
        out.append((logmel(wave, sr=sr, n_mels=n_mels, min_frames=min_frames).astype(np.float16), len(wave) / sr))
    return out


def _init_worker(parent_pid: int) -> None:
    """Pool initializer: die with the parent (SIGTERM when it dies), run torch on one thread."""
    from s2ilib.speech.features import _one_thread

    die_with_parent(parent_pid)
    _one_thread()


def synthesis_pool(workers: int, mp_context: str | None = None):
    """A process pool for :func:`_speak_chunk` whose workers die when this process dies.

    Start method: ``mp_context`` or "fork" on Linux (workers start in milliseconds), "spawn" elsewhere.
    """
    import multiprocessing as mp

    method = mp_context or ("fork" if sys.platform.startswith("linux") else "spawn")
    return mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(os.getpid(),))


def _open_cached(out_dir: Path, key: dict) -> FeatureStore | None:
    cfg_path = out_dir / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        if json.loads(cfg_path.read_text()).get("key") != key:
            return None
        return FeatureStore.open(out_dir)
    except (json.JSONDecodeError, FeatureStoreError):
        return None


def synthesize_dataset_speech(dataset: SpeechImageDataset, out_dir: str | Path, cfg: DataConfig, seed: int,
                              progress: bool = True, mp_context: str | None = None) -> FeatureStore:
    """Speak every caption of ``dataset`` (see module docstring) into a FeatureStore at ``out_dir``.

    Writes ``features.npy``, ``index.csv``, ``voices.json`` (train + unseen voice settings),
    ``config.json`` (cache key + totals: utterances, hours, wall time) and, if ``cfg.keep_wav``,
    16 kHz PCM16 ``wav/<utt_id>.wav``. Returns the opened store (cached if already built).

    ``mp_context``: start method of the ``cfg.workers > 1`` pool (see :func:`synthesis_pool`).
    """
    out_dir = Path(out_dir)
    key = cache_key(dataset, cfg, seed)
    cached = _open_cached(out_dir, key)
    if cached is None:
        with writer(out_dir.parent, name=f".{out_dir.name}.lock", clean=False):  # one builder per store
            cached = _open_cached(out_dir, key)  # built meanwhile by the lock's previous holder
            if cached is None:
                return _build(dataset, out_dir, cfg, seed, key, progress, mp_context)
    if out_dir.resolve() == (Path(dataset.root) / "speech").resolve():
        dataset.speech = cached
    return cached


def _build(dataset: SpeechImageDataset, out_dir: Path, cfg: DataConfig, seed: int, key: dict, progress: bool,
           mp_context: str | None) -> FeatureStore:
    from tqdm.auto import tqdm

    train_voices, unseen_voices = voice_pool(cfg.n_train_voices, cfg.n_unseen_voices, seed=seed)
    plan = plan_utterances(dataset, cfg, seed, train_voices, unseen_voices)
    clear_partial(out_dir)
    t0 = time.time()
    with staging_dir(out_dir) as tmp:
        wav_dir = ""
        if cfg.keep_wav:
            (tmp / "wav").mkdir(parents=True, exist_ok=True)
            wav_dir = str(tmp / "wav")
        tasks = [([(u["utt_id"], u["text"], u["voice_obj"]) for u in plan[s:s + CHUNK]],
                  cfg.tts_engine, cfg.sample_rate, cfg.n_mels, cfg.min_frames, wav_dir)
                 for s in range(0, len(plan), CHUNK)]
        writer = FeatureStoreWriter(tmp, n_mels=cfg.n_mels)
        pool = None
        if cfg.workers > 1:
            pool = synthesis_pool(cfg.workers, mp_context)
            results = pool.imap(_speak_chunk, tasks)
        else:
            results = map(_speak_chunk, tasks)
        bar = tqdm(total=len(plan), disable=not progress, desc=f"speech {dataset.name}", unit="utt")
        seconds = 0.0
        try:
            pos = 0
            for chunk in results:
                for feat, dur in chunk:
                    u = {k: v for k, v in plan[pos].items() if k != "voice_obj"}
                    writer.add(feat, **u, duration_s=round(dur, 3))
                    seconds += dur
                    pos += 1
                bar.update(len(chunk))
        finally:
            bar.close()
            if pool is not None:  # also on an error or Ctrl-C: no worker outlives the build
                pool.terminate()
                pool.join()
        writer.finalize()
        wall = time.time() - t0
        voices = {"train": [v.to_dict() for v in train_voices], "unseen": [v.to_dict() for v in unseen_voices]}
        atomic_write_text(tmp / "voices.json", json.dumps(voices, indent=2) + "\n")
        totals = {"utterances": len(plan), "seen": sum(u["condition"] == "seen" for u in plan),
                  "unseen": sum(u["condition"] == "unseen" for u in plan), "hours": seconds / 3600.0,
                  "wall_s": wall, "speech_s_per_wall_s": seconds / max(wall, 1e-9), "workers": cfg.workers}
        atomic_write_text(tmp / "config.json", json.dumps({"key": key, "totals": totals}, indent=2) + "\n")
    store = FeatureStore.open(out_dir)
    if out_dir.resolve() == (Path(dataset.root) / "speech").resolve():
        dataset.speech = store  # replace a store opened before this rebuild
    return store


def speak_utterance(ds, row: int, sr: int = 16000) -> np.ndarray:
    """Re-synthesise utterance ``row`` of the dataset's store (deterministic), 16 kHz float32."""
    from s2ilib.speech.tts import Voice, get_engine

    r = ds.speech.index.iloc[int(row)]
    voice = Voice.from_id(r["voice"])
    return get_engine(voice.engine).synthesize(str(r["text"]), voice, sr=sr)
