"""The study layer without notebooks (fast): the paper's claims, the linear probe, run folders of
variants, the results payloads and the device switch reaching every stage."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from s2ilib.core import registry
from s2ilib.core.config import get_config
from s2ilib.core.device import DeviceError
from s2ilib.study import analysis, report
from s2ilib.study import stages as study
from s2ilib.study.paths import RunPaths, provenance, report_subdir, with_overrides


class ToyDataset:
    """Classes 0-3 train, 4-5 test, 3 images each, one caption per image."""

    name, kind = "toy", "birds"

    def __init__(self):
        self.images = [SimpleNamespace(class_index=c, split="train" if c < 4 else "test", captions=[f"c{c} i{k}"])
                       for c in range(6) for k in range(3)]

    def split(self, name):
        return [i for i, r in enumerate(self.images) if r.split == name]


def _emb(n_images: int, dim: int = 4, seed: int = 0, condition: str = "seen"):
    g = torch.Generator().manual_seed(seed)
    return {"emb": torch.randn(n_images, dim, generator=g), "image_idx": torch.arange(n_images),
            "caption_idx": torch.zeros(n_images, dtype=torch.long), "condition": [condition] * n_images,
            "utt_id": [f"u{i}" for i in range(n_images)], "encoder": "speech_ts", "dim": dim}


# ------------------------------------------------------------------------------------------------
# paper claims


def _main(changes=None):
    res = {"one_stage": {"seen": {"fid": 10.0, "attr_acc": 0.8, "attr_acc_shuffled": 0.3}, "unseen": {"fid": 11.0}},
           "two_stage": {"seen": {"fid": 20.0, "attr_acc": 0.5}},
           "classifier": {"seen": {"fid": 5.0, "attr_acc": 0.9}},
           "text": {registry.TEXT_CONDITION: {"fid": 9.0}}}
    for (method, cond, metric), v in (changes or {}).items():
        res[method][cond][metric] = v
    return res


def test_paper_claims_on_known_numbers():
    claims = report.paper_claims({"d": _main()})
    got = dict(zip(claims["claim"], claims["holds"]))
    assert got == {
        "one-stage FID below two-stage FID": True,  # 10 < 20
        "one-stage FID below classifier-based FID": False,  # 10 > 5
        "one-stage FID close to text upper bound (within 20%)": True,  # |10 - 9| <= 1.8
        "one-stage attribute accuracy above two-stage": True,
        "one-stage attribute accuracy above classifier-based": False,
        "one-stage attribute accuracy above the shuffled-speech floor": True,
        "one-stage unseen voices within 20% of seen voices (FID)": True,  # |11 - 10| <= 2
    }
    assert list(claims.columns) == ["dataset", "claim", "metric", "ours", "other", "rule", "holds", "verdict"]
    row = claims.iloc[0]
    assert (row["dataset"], row["ours"], row["other"], row["verdict"]) == ("d", 10.0, 20.0, "holds")
    assert set(claims["verdict"]) == {"holds", "does not hold"}
    line = report.claims_summary(claims)["d"]
    assert "Does not hold: one-stage FID below classifier-based FID;" in line


def test_paper_claims_missing_or_non_finite_numbers_are_not_measured():
    res = _main({("text", registry.TEXT_CONDITION, "fid"): float("nan"), ("one_stage", "unseen", "fid"): None})
    del res["two_stage"]
    rows = {r["claim"]: r for r in report.claim_rows(res)}
    for claim in ("one-stage FID below two-stage FID", "one-stage FID close to text upper bound (within 20%)",
                  "one-stage unseen voices within 20% of seen voices (FID)"):
        assert rows[claim]["holds"] is None and rows[claim]["verdict"] == "not measured"
    assert rows["one-stage FID below classifier-based FID"]["holds"] is False
    assert report.judge(10.0, 12.0, "close") is True and report.judge(10.0, 12.6, "close") is False
    with pytest.raises(ValueError, match="unknown rule"):
        report.judge(1.0, 2.0, "bigger")


# ------------------------------------------------------------------------------------------------
# linear probe


def test_linear_probe_recovers_a_linear_map_fitted_on_training_images_only():
    ds = ToyDataset()
    emb = _emb(len(ds.images), dim=4)
    w, b = torch.randn(4, 6, generator=torch.Generator().manual_seed(1)).double(), torch.arange(6.0).double()
    target = emb["emb"].double() @ w + b
    teacher = target[:, None, :].repeat(1, 2, 1).float()  # (n_images, views, D)
    teacher[ds.split("test")] = 1e3  # test images' features must not enter the fit
    out = analysis.linear_probe(emb, ds, teacher, ridge=1e-9)
    assert out["emb"].shape == (len(ds.images), 6) and out["emb"].dtype == torch.float32
    assert torch.allclose(out["emb"].double(), target, atol=1e-3)  # test rows too: the map generalises
    assert out["image_idx"] is emb["image_idx"] and out["condition"] == emb["condition"]
    shrunk = analysis.linear_probe(emb, ds, teacher, ridge=1e3)  # heavy ridge: towards the mean target
    mean = target[ds.split("train")].mean(0)
    assert (shrunk["emb"].double() - mean).norm() < 0.1 * (target - mean).norm()


def test_only_classifier_based_encoders_are_probed():
    assert [k for k in registry.encoder_names() if analysis.needs_probe(k)] == ["speech_cls"]


# ------------------------------------------------------------------------------------------------
# run folders and variants


def test_preset_folders_are_unchanged_and_overrides_get_variant_folders(tmp_path):
    base = RunPaths.create(tmp_path / "runs", tmp_path / "rep", get_config("smoke"))
    run = tmp_path.resolve() / "runs" / "smoke"
    assert base.data("synth-birds") == run / "data" / "synth-birds"
    assert base.encoder("synth-birds", "speech_ts") == run / "encoders" / "synth-birds" / "speech_ts"
    assert base.gan("synth-birds", "one_stage") == run / "gan" / "synth-birds" / "one_stage"
    assert base.eval("synth-birds") == run / "eval" / "synth-birds"
    assert base.outputs == tmp_path.resolve() / "rep" and base.figures.is_dir()
    assert RunPaths.create(tmp_path / "runs", tmp_path / "rep", "smoke") == base  # a preset name still works

    v = RunPaths.create(tmp_path / "runs", tmp_path / "rep", get_config("smoke", {"gan.steps": 8}))
    assert v.data("synth-birds") == base.data("synth-birds")  # the generator's variant reuses data
    assert v.encoder("synth-birds", "speech_ts") == base.encoder("synth-birds", "speech_ts")  # and encoders
    assert v.gan("synth-birds", "one_stage").name == "one_stage@gan.steps=8"
    assert v.eval("synth-birds").name == "synth-birds@gan.steps=8"
    assert v.outputs == base.report / "variants" / "gan.steps=8" and v.figures.is_dir()
    assert report_subdir(get_config("smoke", {"device": "cpu"})) == ""  # the device does not make a variant

    e = RunPaths.create(tmp_path / "runs", tmp_path / "rep", get_config("smoke", {"encoder.use_jel": False}))
    assert e.encoder("synth-birds", "speech_ts").name == "speech_ts@encoder.use_jel=false"
    assert e.gan("synth-birds", "text").name == "text@encoder.use_jel=false"


def test_registry_overrides_make_a_methods_own_folders(tmp_path, monkeypatch):
    m = registry.Method("one_stage_nokl", "one-stage, no KL", "speech_ts", "one_stage_nokl", "speech",
                        registry.SPEECH_CONDITIONS, overrides={"gan.kl_coef": 0.0})
    monkeypatch.setitem(registry.METHODS, m.name, m)
    paths = RunPaths.create(tmp_path / "runs", tmp_path / "rep", get_config("smoke"))
    assert paths.gan("d", "one_stage_nokl").name == "one_stage_nokl@gan.kl_coef=0"
    assert paths.gan("d", "one_stage").name == "one_stage"
    assert paths.encoder("d", "speech_ts", "one_stage_nokl").name == "speech_ts"  # a gan key: same encoder
    assert paths.config_for("one_stage_nokl").gan.kl_coef == 0.0 and paths.cfg.gan.kl_coef != 0.0
    assert study.encoder_runs(["speech_ts"]) == [("speech_ts", None), ("speech_ts", "one_stage_nokl")]
    both = with_overrides(get_config("smoke", {"gan.steps": 8}), {"gan.kl_coef": 0.0})
    assert (both.gan.steps, both.gan.kl_coef) == (8, 0.0)


def test_provenance_names_the_variant_of_its_stage():
    cfg = get_config("smoke", {"gan.steps": 8})
    assert provenance(cfg, cfg.gan)["variant"] == "gan.steps=8"
    assert provenance(cfg, cfg.encoder)["variant"] == ""
    p = provenance(get_config("smoke"), get_config("smoke").data)
    assert p == {"preset": "smoke", "seed": 1234, "variant": "", "config": p["config"]} and "image_size" in p["config"]


def test_payloads_key_entries_by_their_run_folder(tmp_path):
    cfg = get_config("smoke", {"gan.steps": 8})
    paths = RunPaths.create(tmp_path / "runs", tmp_path / "rep", cfg)
    summary = {"steps": 8, "train_seconds": 1.0, "steps_per_s": 8.0, "final": {}, "sizes": [16, 32]}
    gens = report.generators_payload({("d", "one_stage"): summary, ("d", "text"): summary}, cfg, paths,
                                     {"latency": {"d": {"wave_to_images_s": 0.1}}})
    assert set(gens["d"]) == {"one_stage@gan.steps=8", "text@gan.steps=8"}
    g = gens["d"]["one_stage@gan.steps=8"]
    assert g["variant"] == "gan.steps=8" and g["encoder"] == "speech_ts" and g["latency"]["wave_to_images_s"] == 0.1
    assert "latency" not in gens["d"]["text@gan.steps=8"]
    res = {"recall@10": 0.5}
    encs = report.encoders_payload({("d", "speech_cls", None): {"steps": 3}}, {"d": {"speech_cls": {"seen": res}}},
                                   cfg, paths)
    assert encs["d"]["speech_cls"]["seen"] == res and encs["d"]["speech_cls"]["evaluated_via"] == "linear_probe"
    main = report.main_payload({"d": _main()}, ["one_stage", "two_stage"], cfg, paths)
    entry = main["d@gan.steps=8"]
    assert entry["variant"] == "gan.steps=8" and entry["one_stage"]["seen"]["fid"] == 10.0
    assert len(entry["claims"]) == len(report.CLAIMS) and all(c["verdict"] for c in entry["claims"])
    json.dumps(main, allow_nan=False)


# ------------------------------------------------------------------------------------------------
# the device switch reaches every stage


def test_every_stage_passes_the_configs_device(tmp_path, monkeypatch):
    import s2ilib.evaluation.main as evaluation
    import s2ilib.models.loading as loading
    import s2ilib.models.pipeline as pipeline
    import s2ilib.models.teacher as teacher_mod
    import s2ilib.speech.tts as tts
    import s2ilib.training.encoder_trainer as enc_trainer
    import s2ilib.training.gan_trainer as gan_trainer

    seen: dict[str, str] = {}

    def recorder(name, result=None):
        def fn(*args, device=None, **kwargs):
            seen[name] = str(device)
            if name == "train_gan":
                args[5].mkdir(parents=True, exist_ok=True)  # out_dir
            return result
        return fn

    class FakePipe:
        def __init__(self, gan_dir, device="auto"):
            seen["SpeechToImage"] = str(device)
            self.device = device

        def from_wave(self, wave, n, seed):
            return None

    ds = ToyDataset()
    monkeypatch.setattr(teacher_mod, "compute_teacher_features", recorder("teacher", torch.zeros(18, 1, 4)))
    monkeypatch.setattr(enc_trainer, "train_encoder", recorder("train_encoder", {"steps": 1}))
    monkeypatch.setattr(gan_trainer, "train_gan", recorder("train_gan", {"steps": 1}))
    monkeypatch.setattr(evaluation, "run_main_evaluation", recorder("evaluation", {}))
    monkeypatch.setattr(evaluation, "example_rows", recorder("example_rows", []))
    monkeypatch.setattr(loading, "load_generator", recorder("load_generator", object()))
    monkeypatch.setattr(loading, "generate", lambda gen, c, n=None, seed=0: torch.zeros(n or len(c), 3, 4, 4))
    monkeypatch.setattr(pipeline, "SpeechToImage", FakePipe)
    monkeypatch.setattr(tts, "get_engine", lambda name: SimpleNamespace(synthesize=lambda *a, **k: np.zeros(160)))
    monkeypatch.setattr(study, "load_embeddings", lambda paths, name, kind, method=None: _emb(len(ds.images)))
    monkeypatch.setattr(study, "load_images_uint8", lambda ds, idx, size, bbox_crop=False: torch.zeros(len(idx), 3, 4, 4,
                                                                                                      dtype=torch.uint8))
    monkeypatch.setattr(analysis, "load_embeddings", lambda paths, name, kind, method=None: _emb(len(ds.images)))

    cfg = get_config("smoke", {"device": "cpu"})
    paths = RunPaths.create(tmp_path / "runs", tmp_path / "rep", cfg)
    feats = study.teacher_features(ds, cfg, paths, progress=False)
    study.train_encoder_stage(ds, "speech_ts", cfg, paths, feats, progress=False)
    study.train_generator_stage(ds, "one_stage", cfg, paths, progress=False, n_fixed=2)
    (paths.gan("toy", "one_stage") / loading.GENERATOR_EMA).write_bytes(b"")
    study.evaluate_methods(ds, cfg, paths, ["one_stage"], progress=False)
    study.example_rows(ds, cfg, paths, ["one_stage"], n=2)
    analysis.images_for_utterances(ds, paths, "one_stage", [0, 1], n=2)
    analysis.inference_latency(paths.gan("toy", "one_stage"), "a red bird", n=1, repeats=1, device=cfg.device)
    assert seen == {k: "cpu" for k in ("teacher", "train_encoder", "train_gan", "evaluation", "example_rows",
                                       "load_generator", "SpeechToImage")}
    # each stage left its variant's resolved config beside its outputs
    written = json.loads((paths.gan("toy", "one_stage") / "variant.json").read_text())
    assert written["stage"] == "gan" and written["variant"] == "" and written["config"]["device"] == "cpu"
    assert (paths.encoder("toy", "speech_ts") / "variant.json").is_file()
    assert json.loads((paths.gan("toy", "one_stage") / "pipeline.json").read_text())["encoder"] == "speech_ts"

    if not torch.cuda.is_available():  # a GPU asked for and absent: an error, never a silent CPU run
        gpu = get_config("smoke", {"device": "cuda"})
        with pytest.raises(DeviceError, match="no CUDA"):
            study.train_encoder_stage(ds, "speech_ts", gpu, RunPaths.create(tmp_path / "r2", tmp_path / "rep2", gpu),
                                      feats, progress=False)
