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
    """A constructed main table: KID intervals and per-cell values whose claims have known verdicts."""
    T = registry.TEXT_CONDITION
    res = {"one_stage": {"seen": {"fid": 10.0, "fid_n": 400, "fid_half": 30.0, "fid_half_n": 200,
                                  "kid": 0.010, "kid_ci": [0.008, 0.012], "kid_n": 400,
                                  "attr_acc": 0.6, "attr_acc_ci": [0.58, 0.62], "attr_acc_n": 400,
                                  "attr_acc_shuffled": 0.3, "r_precision": 0.3, "r_precision_ci": [0.25, 0.35],
                                  "r_precision_n": 400, "r_precision_chance": 0.01},
                         "unseen": {"fid": 11.0, "kid": 0.030, "kid_ci": [0.028, 0.032], "kid_n": 400,
                                    "attr_acc": 0.55, "attr_acc_ci": [0.53, 0.57]}},
           "two_stage": {"seen": {"fid": 20.0, "kid": 0.030, "kid_ci": [0.025, 0.035], "kid_n": 400,
                                  "attr_acc": 0.4, "attr_acc_ci": [0.38, 0.42]}},
           "classifier": {"seen": {"fid": 5.0, "kid": 0.005, "kid_ci": [0.004, 0.006], "kid_n": 400,
                                   "attr_acc": 0.8, "attr_acc_ci": [0.78, 0.82]}},
           "text": {T: {"fid": 9.0, "kid": 0.0105, "kid_ci": [0.0085, 0.0125], "kid_n": 400,
                        "attr_acc": 0.61, "attr_acc_ci": [0.59, 0.63]}},
           "fid_floor": {"fid": 25.0, "kid": 0.0001, "n_b": 200}}
    for (method, cond, metric), v in (changes or {}).items():
        res[method][cond][metric] = v
    return res


def _items():
    """Per-item scores of 100 test images x 4 captions with known paired differences."""
    rng = np.random.default_rng(0)
    img = np.repeat(np.arange(100), 4)
    qid = [f"{i}/{c}/0" for i, c in zip(img, np.tile(np.arange(4), 100))]
    base = rng.uniform(0.3, 0.9, img.size)
    col = lambda acc, **kw: {"query_id": qid, "image_idx": img, "attr_acc": acc, **kw}
    return {"one_stage/seen": col(base, attr_acc_shuffled=base - 0.3 + rng.normal(0, 0.05, img.size),
                                  r_precision=(rng.uniform(size=img.size) < 0.3).astype(float)),
            "one_stage/unseen": col(base - 0.05 + rng.normal(0, 0.02, img.size)),  # straddles -0.05
            "two_stage/seen": col(base - 0.2 + rng.normal(0, 0.05, img.size)),
            "classifier/seen": col(base + 0.2 + rng.normal(0, 0.05, img.size)),
            f"text/{registry.TEXT_CONDITION}": col(base + rng.normal(0, 0.02, img.size))}


EXPECTED = {
    "one-stage KID below two-stage KID": "holds",  # 0.010 +- 0.002 vs 0.030 +- 0.005
    "one-stage KID below classifier-based KID": "fails",  # vs 0.005 +- 0.001
    "one-stage KID close to text upper bound (within 20%)": "undecided",  # diff -0.0005 +- 0.0028, margin 0.0021
    "one-stage unseen voices close to seen voices (KID within 20%)": "fails",  # diff 0.02 +- 0.0045, margin 0.002
    "one-stage attribute accuracy above two-stage": "holds",  # paired +0.2
    "one-stage attribute accuracy above classifier-based": "fails",  # paired -0.2
    "one-stage attribute accuracy above the shuffled-speech floor": "holds",  # paired +0.3
    "one-stage attribute accuracy close to text upper bound (within 0.05)": "holds",  # paired 0 +- 0.005
    "one-stage unseen voices close to seen voices (attribute accuracy within 0.05)": "undecided",  # -0.05 +- small
    "one-stage R-precision above chance": "holds",  # 0.3 vs 0.01
}


def test_paper_claims_verdicts_from_intervals():
    claims = report.paper_claims({"d": _main()}, {"d": _items()})
    assert dict(zip(claims["claim"], claims["verdict"])) == EXPECTED
    assert list(claims.columns) == report.CLAIM_COLUMNS
    for col in ("estimate", "low", "high", "p_value", "n", "verdict"):
        assert col in claims.columns
    rows = claims.set_index("claim")
    two = rows.loc["one-stage attribute accuracy above two-stage"]
    assert two["comparison"] == "paired" and two["n"] == 400 and two["n_groups"] == 100
    assert two["low"] <= two["estimate"] <= two["high"] and two["p_value"] < 0.001
    assert two["estimate"] == pytest.approx(0.2, abs=0.02)
    kid = rows.loc["one-stage KID below two-stage KID"]
    assert kid["comparison"] == "unpaired (KID subsets)" and "floor FID 25.0" in kid["note"]
    assert rows.loc["one-stage KID close to text upper bound (within 20%)"]["margin"] == pytest.approx(0.0021)
    line = report.claims_summary(claims)["d"]
    assert "fails: one-stage KID below classifier-based KID;" in line and "undecided:" in line


def test_claims_without_per_item_scores_use_the_stored_intervals():
    rows = {r["claim"]: r for r in report.claim_rows(_main())}
    r = rows["one-stage attribute accuracy above two-stage"]
    assert r["comparison"] == "unpaired (no per-item scores)" and r["verdict"] == "holds"
    assert rows["one-stage R-precision above chance"]["comparison"] == "interval vs chance"
    assert rows["one-stage R-precision above chance"]["verdict"] == "holds"


def test_claims_with_missing_numbers_are_undecided():
    res = _main({("text", registry.TEXT_CONDITION, "kid"): float("nan"), ("one_stage", "unseen", "kid_ci"): None})
    del res["two_stage"]
    rows = {r["claim"]: r for r in report.claim_rows(res)}
    for claim in ("one-stage KID below two-stage KID", "one-stage KID close to text upper bound (within 20%)",
                  "one-stage unseen voices close to seen voices (KID within 20%)",
                  "one-stage attribute accuracy above two-stage"):
        assert rows[claim]["verdict"] == "undecided" and rows[claim]["comparison"] == "not measured", claim
    assert rows["one-stage KID below classifier-based KID"]["verdict"] == "fails"


def test_claim_rules_on_edge_cases():
    items = _items()
    same = {**items, "two_stage/seen": items["one_stage/seen"]}  # a method against itself: exactly 0
    r = {x["claim"]: x for x in report.claim_rows(_main(), same)}["one-stage attribute accuracy above two-stage"]
    assert (r["estimate"], r["low"], r["high"], r["p_value"], r["verdict"]) == (0.0, 0.0, 0.0, 1.0, "undecided")
    never = {**items, "one_stage/seen": {**items["one_stage/seen"],
                                         "r_precision": np.zeros(len(items["one_stage/seen"]["query_id"]))}}
    r = {x["claim"]: x for x in report.claim_rows(_main(), never)}["one-stage R-precision above chance"]
    assert r["verdict"] == "fails" and r["estimate"] == pytest.approx(-0.01)
    assert report.margin_verdict(-0.01, 0.02, 0.05) == "holds"
    assert report.margin_verdict(0.06, 0.1, 0.05) == "fails" and report.margin_verdict(-0.2, -0.06, 0.05) == "fails"
    assert report.margin_verdict(0.01, 0.07, 0.05) == "undecided"
    assert report.margin_verdict(float("nan"), 0.0, 0.05) == "undecided"


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
    assert study.encoder_runs(["speech_ts"]) == [("speech_ts", None)]  # gan keys only: no encoder run of its own
    enc = registry.Method("one_stage_nojel", "one-stage, no JEL", "speech_ts", "one_stage_nojel", "speech",
                          registry.SPEECH_CONDITIONS, overrides={"encoder.use_jel": False})
    monkeypatch.setitem(registry.METHODS, enc.name, enc)
    assert study.encoder_runs(["speech_ts"]) == [("speech_ts", None), ("speech_ts", "one_stage_nojel")]
    assert study.encoder_runs(["text_ts"]) == [("text_ts", None)]
    both = with_overrides(get_config("smoke", {"gan.steps": 8}), {"gan.kl_coef": 0.0})
    assert (both.gan.steps, both.gan.kl_coef) == (8, 0.0)


def test_study_methods_leave_out_a_no_op_variant(capsys):
    small = get_config("small")  # contrastive recipe: the authors' row is a model of its own
    assert study.study_methods(["one_stage", "one_stage_authors"], small) == ["one_stage", "one_stage_authors"]
    assert with_overrides(small, {"gan.recipe": "stackgan2"}).gan.d_loss == "bce"  # the recipe's switches go too
    paper = get_config("paper")  # already the authors' recipe: the row would repeat one_stage
    assert study.study_methods(["one_stage", "one_stage_authors"], paper) == ["one_stage"]
    assert "one_stage_authors: left out" in capsys.readouterr().out
    assert study.study_methods(["one_stage_authors"], small, generators=True) == ["one_stage_authors"]
    with pytest.raises(registry.RegistryError, match="reuses the generator"):
        study.study_methods(["two_stage"], small, generators=True)
    with pytest.raises(registry.RegistryError, match="unknown method"):
        study.study_methods(["nope"], small)


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
    # the authors'-recipe claims are left out: _main() has no one_stage_authors row
    assert len(entry["claims"]) == sum(not c.optional for c in report.CLAIMS) and all(c["verdict"] for c in entry["claims"])
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


# ------------------------------------------------------------------------------------------------
# where the information goes


class AttrDataset:
    """40 train + 20 test images; 'head' is a colour in {red, blue, green}, 'tail' in {long, short};
    2 captions per image, the first mentions both attributes, the second only the head."""

    name, kind = "attr", "birds"
    vocabulary = {"head": ["red", "blue", "green"], "tail": ["long", "short"]}

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.images = []
        for k in range(60):
            attrs = {"head": str(rng.choice(self.vocabulary["head"])), "tail": str(rng.choice(self.vocabulary["tail"]))}
            self.images.append(SimpleNamespace(split="train" if k < 40 else "test", attributes=attrs,
                                               caption_attributes=[dict(attrs), {"head": attrs["head"]}]))

    def split(self, name):
        return [i for i, r in enumerate(self.images) if r.split == name]


def test_attribute_information_table_on_known_features():
    ds = AttrDataset()
    rng = np.random.default_rng(1)
    onehot = lambda a, v: np.eye(len(ds.vocabulary[a]))[ds.vocabulary[a].index(v)]
    # teacher features: the head colour linearly, the tail not at all (noise)
    teacher = np.stack([np.concatenate([3 * onehot("head", r.attributes["head"]), rng.normal(size=6)])
                        for r in ds.images]).astype(np.float32)
    # a caption embedding that carries both mentioned values, one that carries nothing
    rows = [(i, c) for i in range(60) for c in range(2)]
    full = np.stack([np.concatenate([onehot("head", ds.images[i].attributes["head"]),
                                     onehot("tail", ds.images[i].attributes["tail"])]) for i, _ in rows])
    emb = lambda x: {"emb": torch.tensor(x, dtype=torch.float32), "image_idx": torch.tensor([i for i, _ in rows]),
                     "caption_idx": torch.tensor([c for _, c in rows]), "condition": ["seen"] * len(rows)}
    embs = {"good": emb(full + 0.05 * rng.normal(size=full.shape)), "noise": emb(rng.normal(size=(len(rows), 5)))}
    test = ds.split("test")
    items = {"gen/seen": {"query_id": [f"{i}/0/0" for i in test], "image_idx": np.array(test),
                          "hit_head": np.ones(len(test)), "hit_tail": np.r_[np.zeros(10), np.full(10, np.nan)]}}
    table = analysis.attribute_information_table(ds, torch.tensor(teacher)[:, None], embs, items, seed=0)
    t = table.set_index("source")
    assert list(table["stage"].str[:3]) == ["(a)", "(b)", "(b)", "(c)"]
    assert t.loc["teacher", "head"] == 1.0 and t.loc["teacher", "tail"] < 0.8
    assert t.loc["good", "head"] == 1.0 and t.loc["good", "tail"] == 1.0 and t.loc["good", "mean"] == 1.0
    assert t.loc["noise", "head"] < 0.8
    assert t.loc["gen/seen", "head"] == 1.0 and t.loc["gen/seen", "tail"] == 0.0
    assert t.loc["gen/seen", "mean"] == 0.5 and t.loc["gen/seen", "pooled"] == pytest.approx(20 / 30)
    assert t.loc["gen/seen", "n"] == 30 and t.loc["gen/seen", "n_test_images"] == 20
    assert t.loc["good", "n"] == 60  # test captions: 20 x (head + tail) + 20 x head
    for src in ("teacher", "noise", "gen/seen"):
        assert t.loc[src, "low"] <= t.loc[src, "pooled"] <= t.loc[src, "high"]
