"""Where the time of two costly stages goes: teacher features and speech synthesis + featurisation.

    python benchmarks/stage_profile.py [--preset small] [--images 64] [--utterances 200] [--threads 2]

Needs the preset's built birds dataset (``s2i study --preset small --only 01``). Prints, for each
stage, a table of its parts in seconds per item, measured one after the other on the same items
(each part timed on its own, after one warm-up), and for the teacher the fp32 / bf16 /
bf16 + channels-last paths side by side with the ratio against float32 and the largest feature
difference. Speech: espeak synthesis, resampling, pre-emphasis + log-mel, float16 store, per
utterance on one process (the study runs ``data.workers`` such processes).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _timed(fn, *args, repeat: int = 1):
    fn(*args)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
    return out, (time.perf_counter() - t0) / repeat


def teacher_profile(ds, cfg, n: int) -> list[dict]:
    import torch

    from s2ilib.models.teacher import Teacher, image_views, load_image_uint8, _image_path

    recs = ds.images[:n]
    t0 = time.perf_counter()
    imgs = [load_image_uint8(_image_path(ds, r)) for r in recs]
    t_load = (time.perf_counter() - t0) / n
    size = cfg.encoder.teacher_image_size
    t0 = time.perf_counter()
    views = torch.cat([image_views(im, cfg.encoder.teacher_views, size) for im in imgs])
    t_views = (time.perf_counter() - t0) / n
    rows = [{"part": "decode image file", "s_per_image": t_load},
            {"part": f"crop + resize {cfg.encoder.teacher_views} views", "s_per_image": t_views}]
    ref = None
    for name, bf16, cl in (("network float32", False, False), ("network bf16 autocast (before)", True, False),
                           ("network bf16 + channels-last (the Teacher's default)", True, True)):
        teacher = Teacher(cfg.encoder.teacher, bf16=bf16, channels_last=cl)
        x = views
        feats, sec = _timed(lambda: torch.cat([teacher.features(x[i: i + 64]) for i in range(0, len(x), 64)]))
        ref = feats if ref is None else ref
        err = float((feats - ref).abs().max() / ref.abs().max())
        rows.append({"part": name, "s_per_image": sec / n, "max_rel_diff_vs_fp32": err})
    fp32 = rows[2]["s_per_image"]
    for r in rows[2:]:
        r["speedup_vs_fp32"] = fp32 / r["s_per_image"]
    return rows


def speech_profile(ds, cfg, n: int) -> list[dict]:
    from s2ilib.speech.audio import resample
    from s2ilib.speech.features import logmel, preprocess
    from s2ilib.speech.tts import Voice, get_engine

    idx = ds.speech.index.iloc[:n]
    voices = [Voice.from_id(v) for v in idx["voice"]]
    engine = get_engine(voices[0].engine)
    t = {"synthesis (espeak, native rate)": 0.0, "resample to 16 kHz": 0.0, "pre-emphasis": 0.0,
         "log-mel (torchaudio)": 0.0, "float16 cast": 0.0}
    audio_s = 0.0
    for text, voice in zip(idx["text"], voices):
        t0 = time.perf_counter()
        wave, native = engine.synthesize_native(str(text), voice)
        t1 = time.perf_counter()
        w16 = resample(wave, native, 16000) if native != 16000 else wave
        t2 = time.perf_counter()
        preprocess(w16)
        t3 = time.perf_counter()
        feat = logmel(w16, sr=16000, n_mels=cfg.data.n_mels)
        t4 = time.perf_counter()
        feat.astype(np.float16)
        t5 = time.perf_counter()
        for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            t[k] += dt
        audio_s += len(w16) / 16000
    total = sum(t.values())
    rows = [{"part": k, "s_per_utterance": v / n, "share": v / total} for k, v in t.items()]
    rows.append({"part": "all (one process)", "s_per_utterance": total / n, "share": 1.0,
                 "x_real_time": audio_s / total})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--dataset", default="synth-birds")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--utterances", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run-root", default="runs")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from s2ilib.core.config import get_config
    from s2ilib.study import stages
    from s2ilib.study.paths import RunPaths

    torch.set_num_threads(args.threads)
    cfg = get_config(args.preset)
    paths = RunPaths.create(args.run_root, "/tmp/stage_profile", cfg)
    ds = stages.load_built_dataset(args.dataset, paths)
    pd.set_option("display.width", 160)
    print(f"teacher {cfg.encoder.teacher}, {args.images} images x {cfg.encoder.teacher_views} views at "
          f"{cfg.encoder.teacher_image_size} px, {args.threads} threads")
    print(pd.DataFrame(teacher_profile(ds, cfg, args.images)).to_string(index=False, float_format="%.4g"))
    print(f"\nspeech: {args.utterances} utterances of {args.dataset}, one process")
    print(pd.DataFrame(speech_profile(ds, cfg, args.utterances)).to_string(index=False, float_format="%.4g"))


if __name__ == "__main__":
    main()
