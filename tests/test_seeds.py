"""Issue 14 part 2: the main table over training seeds.

``train_seed`` reseeds the encoders and generators and nothing else: the data folder (keyed by
``seed`` and ``data.*``) is shared, the trained weights differ, and ``s2ilib.study.seeds``
combines per-seed main tables into mean / std / min / max per cell.
"""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from s2ilib.core.config import get_config
from s2ilib.study import seeds as S
from s2ilib.study import stages

# ------------------------------------------------------------------------------------------------
# the combiner on constructed tables


def _long(values: dict[tuple, float]) -> pd.DataFrame:
    rows = [(*k, v, np.nan, np.nan, 10, 10) for k, v in values.items()]
    return pd.DataFrame(rows, columns=["dataset", "method", "condition", "metric", "value", "low", "high", "n",
                                       "n_images"])


FID = ("synth-birds", "one_stage", "seen", "fid")
ACC = ("synth-birds", "one_stage", "seen", "attr_acc")
WER = ("synth-birds", "two_stage", "unseen", "wer")


def test_combiner_gives_the_known_mean_and_spread(tmp_path):
    tables = {1234: _long({FID: 10.0, ACC: 0.30, WER: 0.5}),
              2: _long({FID: 12.0, ACC: 0.40, WER: np.nan}),
              3: _long({FID: 17.0, ACC: 0.35})}
    out = S.combine_seed_tables(tables).set_index(S.KEY)
    fid = out.loc[FID]
    assert fid["n_seeds"] == 3 and fid["mean"] == pytest.approx(13.0)
    assert fid["std"] == pytest.approx(math.sqrt(((10 - 13) ** 2 + (12 - 13) ** 2 + (17 - 13) ** 2) / 2))  # 3.606
    assert (fid["min"], fid["max"]) == (10.0, 17.0)
    assert fid["seeds"] == "1234;2;3" and fid["values"] == "10;12;17"
    acc = out.loc[ACC]
    assert acc["mean"] == pytest.approx(0.35) and acc["std"] == pytest.approx(0.05)
    wer = out.loc[WER]  # NaN in one seed, absent in another: one value, no spread
    assert wer["n_seeds"] == 1 and wer["mean"] == 0.5 and math.isnan(wer["std"])

    paths = S.write_seed_tables(S.combine_seed_tables(tables), tmp_path)
    back = pd.read_csv(paths["csv"])
    assert list(back.columns) == S.SEED_COLUMNS and len(back) == 3
    md = paths["md"].read_text()
    assert "| synth-birds | one_stage | seen | 13.000 ± 3.606 [10.000, 17.000] | 0.350 ± 0.050 [0.300, 0.400] |" in md
    assert "0.500 [0.500, 0.500] (n=1)" in md and "3 training seeds (1234, 2, 3)" in md


def test_combiner_refuses_duplicate_cells():
    df = pd.concat([_long({FID: 1.0}), _long({FID: 2.0})])
    with pytest.raises(S.SeedTableError, match="appears twice"):
        S.combine_seed_tables({1: df})


def _report(root, preset, variant, fid, study_seed=1234):
    """A report folder as notebook 04 leaves it: results.json main entries + main_table_long.csv."""
    out = root / preset / ("variants/" + variant if variant else "")
    out.mkdir(parents=True, exist_ok=True)
    _long({FID: fid}).to_csv(out / "main_table_long.csv", index=False)
    est = 0.05 + fid / 1000  # one signed claim per run, beside its main table (notebook 04's 04_claims.csv)
    pd.DataFrame([{"dataset": "synth-birds", "claim": "A above B", "metric": "attr_acc", "rule": "higher",
                   "margin": float("nan"), "estimate": est, "low": est - 0.01, "high": est + 0.01,
                   "verdict": "holds"}]).to_csv(out / "04_claims.csv", index=False)
    path = root / preset / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"schema_version": 1, "preset": preset, "main": {}}
    results["main"][("synth-birds@" + variant) if variant else "synth-birds"] = {"variant": variant, "seed": study_seed}
    path.write_text(json.dumps(results))


def test_seed_tables_finds_the_repeats_and_refuses_other_variants(tmp_path):
    _report(tmp_path, "small", "", 10.0)
    for s, fid in ((2, 12.0), (3, 17.0)):
        _report(S.seed_report_root(tmp_path, "small", s), "small", f"train_seed={s}", fid)
    tables = S.seed_tables(tmp_path, "small")
    assert list(tables) == [1234, 2, 3]
    assert tables[3] == tmp_path / "small/seeds/train_seed=3/small/variants/train_seed=3/main_table_long.csv"
    assert S.main(["--preset", "small", "--report-root", str(tmp_path)]) == 0
    combined = pd.read_csv(tmp_path / "small" / "main_table_seeds.csv")
    assert combined.loc[0, "mean"] == pytest.approx(13.0) and combined.loc[0, "n_seeds"] == 3
    assert (tmp_path / "small" / "main_table_seeds.md").is_file()
    pooled = pd.read_csv(tmp_path / "small" / "04_claims_pooled.csv")
    assert pooled.loc[0, "n_seeds"] == 3 and pooled.loc[0, "estimate"] == pytest.approx(0.063, abs=1e-9)
    assert pooled.loc[0, "seed_verdicts"] == "1234=holds;2=holds;3=holds" and pooled.loc[0, "verdict"] == "holds"
    rec = json.loads((tmp_path / "small" / "results.json").read_text())["pooled_claims"]["04"]
    assert rec["seeds"] == [1234, 2, 3] and rec["rows"][0]["verdict"] == "holds"
    # a repeat that also changed the GAN is not a seed of the same table
    _report(S.seed_report_root(tmp_path, "small", 4), "small", "gan.steps=10,train_seed=4", 11.0)
    with pytest.raises(S.SeedTableError, match="more than train_seed"):
        S.seed_tables(tmp_path, "small", [2, 4])
    with pytest.raises(S.SeedTableError, match="results.json: missing"):
        S.seed_tables(tmp_path, "small", [5])
    with pytest.raises(S.SeedTableError, match="no main table of variant 'seed=7'"):  # other data
        S.seed_tables(tmp_path, "small", [2], seed=7)
    with pytest.raises(S.SeedTableError, match="already in the table"):
        S.seed_tables(tmp_path, "small", [1234])
    # a main run made with an override: its repeats are that variant plus train_seed
    _report(tmp_path, "small", "gan.steps=10", 20.0)
    assert S.seed_tables(tmp_path, "small", [4], overrides={"gan.steps": 10})[4].parent.name == \
        "gan.steps=10,train_seed=4"
    assert S.main(["--preset", "small", "--report-root", str(tmp_path), "--seeds", "4", "--set", "gan.steps=10"]) == 0
    assert pd.read_csv(tmp_path / "small" / "main_table_seeds.csv").loc[0, "values"] == "20;11"


# ------------------------------------------------------------------------------------------------
# train_seed at smoke: the same data, other weights


def test_train_seed_keys_trainers_not_data():
    base, other = get_config("smoke"), get_config("smoke", {"train_seed": 2})
    data_seed = get_config("smoke", {"seed": 2})
    pb, po, pd_ = (stages.RunPaths(Path("/r"), Path("/rep"), c) for c in (base, other, data_seed))
    assert base.training_seed == 1234 and other.training_seed == 2 and other.seed == base.seed
    assert po.data("synth-birds") == pb.data("synth-birds")  # same data folder
    assert pd_.data("synth-birds") != pb.data("synth-birds")  # the study seed does key the data
    assert po.encoder("synth-birds", "speech_ts").name == "speech_ts@train_seed=2"
    assert po.gan("synth-birds", "one_stage").name == "one_stage@train_seed=2"
    assert po.eval("synth-birds").name == "synth-birds@train_seed=2"


@pytest.mark.slow
def test_two_training_seeds_share_the_data_and_differ_in_weights(tmp_path, one_thread):
    from places_fixture import make_recorded_places

    from s2ilib.models.loading import load_generator, load_trained_encoder

    src = make_recorded_places(tmp_path / "places", train_per_class=3, test_per_class=1)
    common = {"data.datasets": ["places"], "data.dataset_dirs": [str(src)], "data.workers": 1, "device": "cpu",
              "encoder.max_steps": 3, "gan.steps": 2, "gan.ckpt_every": 2, "gan.sample_every": 2}
    runs = {}
    for label, extra in (("base", {}), ("same", {"train_seed": 1234}), ("other", {"train_seed": 2})):
        cfg = get_config("smoke", {**common, **extra})
        paths = stages.RunPaths.create(tmp_path / "runs", tmp_path / "reports", cfg)
        ds, _ = stages.build_dataset("places", cfg, paths, progress=False)
        teacher = stages.teacher_features(ds, cfg, paths, progress=False)
        stages.train_encoder_stage(ds, "speech_ts", cfg, paths, teacher, progress=False)
        stages.train_generator_stage(ds, "one_stage", cfg, paths, progress=False)
        runs[label] = (cfg, paths, ds)
        if label == "base":
            features = paths.data("places") / "speech" / "features.npy"
            built = features.stat().st_mtime_ns
    (_, pb, db), (_, ps, _), (_, po, do) = runs["base"], runs["same"], runs["other"]
    # the same dataset: one data folder, built once, same records and utterances
    assert pb.data("places") == ps.data("places") == po.data("places")
    assert features.stat().st_mtime_ns == built
    assert db.fingerprint() == do.fingerprint()
    assert list(db.speech.index["utt_id"]) == list(do.speech.index["utt_id"])
    # three encoder folders, each trained with its own seed
    folders = {k: p.encoder("places", "speech_ts") for k, (_, p, _) in runs.items()}
    assert len(set(folders.values())) == 3
    assert [json.loads((folders[k] / "config.json").read_text())["seed"] for k in ("base", "same", "other")] == \
        [1234, 1234, 2]

    def weights(p):
        model, _, _ = load_trained_encoder(p.encoder("places", "speech_ts"), map_location="cpu")
        enc = torch.cat([t.flatten().float() for t in model.state_dict().values()])
        gen = load_generator(p.gan("places", "one_stage") / "generator_ema.pt", device="cpu")
        return enc, torch.cat([t.flatten().float() for t in gen.state_dict().values()])

    (eb, gb), (es, gs), (eo, go) = weights(pb), weights(ps), weights(po)
    assert torch.equal(eb, es) and torch.equal(gb, gs)  # training seed 1234 either way: the same weights
    assert not torch.allclose(eb, eo) and not torch.allclose(gb, go)  # another training seed: other weights
