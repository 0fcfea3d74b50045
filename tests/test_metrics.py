"""FID / KID / IS / R-precision / WER on inputs whose answer is known."""
import pytest
import torch

from s2ilib.evaluation import metrics as M


def gaussian(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_fid_zero_for_same_set_and_monotonic_in_noise():
    real = gaussian(400, 16, 0)
    noise = gaussian(400, 16, 1)
    assert M.fid_from_features(real, real) == pytest.approx(0.0, abs=1e-6)
    fids = [M.fid_from_features(real, real + s * noise) for s in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    # Mean shift only: FID = ||mu1 - mu2||^2 exactly (same covariance).
    assert M.fid_from_features(real, real + 0.5) == pytest.approx(16 * 0.25, rel=1e-6)


def test_kid_near_zero_for_same_distribution_and_grows_with_noise():
    # Two independent draws of one distribution: KID (unbiased MMD^2) ~ 0. (The same set against
    # itself is not a fair case for KID: subsets drawn from both sides share points.)
    real, other = gaussian(600, 16, 0), gaussian(600, 16, 2)
    noise = gaussian(600, 16, 1)
    mean0, std0 = M.kid_from_features(real, other, subset_size=200, subsets=50)
    assert abs(mean0) < 3 * std0 + 1e-3, (mean0, std0)
    kids = [M.kid_from_features(real, other + s * noise, subset_size=200, subsets=50)[0] for s in (0.5, 1.0, 2.0)]
    assert mean0 < kids[0] < kids[1] < kids[2], (mean0, kids)
    # Seeded: the same call gives the same subsets.
    assert M.kid_from_features(real, other, 200, 50, seed=3) == M.kid_from_features(real, other, 200, 50, seed=3)


def test_inception_score_extremes():
    c = 10
    n = c * 1000  # 1000 per split: splits are then nearly balanced over classes
    confident = torch.full((n, c), 1e-6)
    confident[torch.arange(n), torch.arange(n) % c] = 1.0
    confident /= confident.sum(1, keepdim=True)
    mean, std = M.inception_score(confident, splits=10)
    assert mean == pytest.approx(c, rel=0.02) and std < 0.1  # confident and uniform over classes -> C
    mean1, _ = M.inception_score(torch.full((500, c), 1.0 / c))
    assert mean1 == pytest.approx(1.0, abs=1e-6)  # same prediction for every image -> 1
    one_class = torch.zeros(500, c)
    one_class[:, 3] = 1.0
    assert M.inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)  # confident but one class -> 1


def test_is_head_learns_separable_classes_and_round_trips(tmp_path):
    torch.manual_seed(0)
    n_per, c, d = 40, 5, 64
    centres = gaussian(c, d, 5) * 3
    labels = torch.arange(c).repeat_interleave(n_per) + 100  # arbitrary label ids
    feats = centres[labels - 100] + gaussian(n_per * c, d, 6)
    head = M.train_is_head(feats, labels, epochs=100, seed=0)
    assert head.classes == [100, 101, 102, 103, 104]
    assert head.report["n_holdout"] == 40 and head.report["holdout_accuracy"] > 0.9, head.report
    probs = M.is_probabilities(head, feats)
    assert probs.shape == (n_per * c, c) and torch.allclose(probs.sum(1), torch.ones(n_per * c), atol=1e-5)
    # Separable classes, balanced: a confident classifier gives IS near C (4.4 of 5 measured).
    assert M.inception_score(probs, splits=2)[0] > 0.75 * c
    M.save_is_head(head, tmp_path / "is_head.pt")
    loaded = M.load_is_head(tmp_path / "is_head.pt")
    assert torch.allclose(M.is_probabilities(loaded, feats), probs) and loaded.report == head.report


def test_r_precision_perfect_and_random():
    emb = gaussian(500, 32, 0)
    assert M.r_precision(emb, emb, n_candidates=100) == (1.0, 0.0)
    mean, std = M.r_precision(emb, gaussian(500, 32, 1), n_candidates=10, seed=0)
    assert 0.05 < mean < 0.16 and std > 0  # chance = 1/10
    # Labels keep same-group rows out of the mismatched candidates. 10 captions per image, all close
    # to their image: with the siblings excluded the image finds its caption almost always; when
    # siblings may be drawn as "mismatched" they often beat it.
    groups = torch.arange(50).repeat_interleave(10)
    base = gaussian(50, 32, 2)[groups]
    cap, img = base + 0.3 * gaussian(500, 32, 3), base + 0.3 * gaussian(500, 32, 4)
    with_labels = M.r_precision(img, cap, labels=groups, n_candidates=100)[0]
    without = M.r_precision(img, cap, n_candidates=100)[0]
    assert with_labels > 0.95 and without < with_labels - 0.3, (with_labels, without)
    with pytest.raises(ValueError, match="fewer than"):
        M.r_precision(emb[:20], emb[:20], n_candidates=100)


def test_wer_normalisation_and_values():
    assert M.wer("This bird has a RED head.", "this bird has a red head") == 0.0
    assert M.wer("the flower has five petals", "The flower has 5 petals!") == 0.0
    assert M.wer("a bird's wing", "a birds wing") == 0.0
    assert M.wer("a red centre and grey wings", "A red center and gray wings.") == 0.0
    assert M.normalize_transcript("Red-headed, 12 petals; 25 birds") == "red headed twelve petals 25 birds"
    # 1 substitution + 1 deletion over 6 + 2 reference words, corpus level.
    assert M.wer(["this bird has a red head", "white belly"], ["this bird has a blue head", "white"]) == pytest.approx(2 / 8)
    assert M.wer("red head", "") == 1.0
    assert M.wer("red head", "a red red head") == 1.0  # two insertions over two words
    with pytest.raises(ValueError):
        M.wer(["a"], ["a", "b"])


def test_fid_inception_small_size_and_cache(tmp_path):
    torch.set_num_threads(2)
    model = M.FIDInception(image_size=75)
    imgs = torch.randint(0, 256, (6, 3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats = M.inception_features(imgs, batch_size=4, progress=False, model=model)
    assert feats.shape == (6, 2048) and torch.isfinite(feats).all() and (feats >= 0).all()  # post-ReLU pool
    assert not torch.allclose(feats[0], feats[1])
    # Streaming batches gives the same features as one tensor.
    again = M.inception_features([imgs[:3], imgs[3:]], progress=False, model=model)
    assert torch.allclose(feats, again, atol=1e-4)
    calls = []
    path = M.real_features_path(tmp_path, "synth-birds", "test", 64, 75)
    compute = lambda: calls.append(1) or feats
    out1 = M.cached_real_features(path, compute, {"n_images": 6})
    out2 = M.cached_real_features(path, compute, {"n_images": 6})
    assert len(calls) == 1 and torch.equal(out1, out2) and path.is_file()
    M.cached_real_features(path, compute, {"n_images": 7})  # changed meta -> recomputed
    assert len(calls) == 2
    with pytest.raises(ValueError, match="uint8"):
        M.inception_features(imgs.float(), progress=False, model=model)


def test_fid_inception_standard_size_matches_graph():  # ~3 s: one 299 px batch of 2
    model = M.FIDInception(image_size=299)
    imgs = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats = M.inception_features(imgs, progress=False, model=model)
    assert feats.shape == (2, 2048)
    # The global-average trunk path equals the graph's fixed 8x8 pool at 299.
    x = model.preprocess(imgs)
    with torch.no_grad():
        for layer in model._trunk:
            x = layer(x)
    assert torch.allclose(feats, x.mean(dim=(2, 3)), atol=1e-4)


def test_kid_matches_torchmetrics():
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    from s2ilib.evaluation.fid import _Precomputed

    real, fake = gaussian(120, 16, 0), gaussian(90, 16, 1) * 1.3 + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Precomputed(16), subsets=20, subset_size=40)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        mean, std = metric.compute()
    ours = M.kid_from_features(real, fake, subset_size=40, subsets=20, seed=5)
    assert ours == pytest.approx((float(mean), float(std)), rel=1e-9, abs=1e-12)


def test_fast_inception_features_match_float32(force_bf16):
    """bfloat16 autocast + channels-last (cfg.eval.fid_bf16): the FID of the same two image sets
    moves by less than 1% against float32. The full 299-px FID Inception (packaged weights), 2 x 16
    smooth random images (~10 s on 2 cores)."""
    import torch.nn.functional as F

    from s2ilib.evaluation.fid import inception_features, frechet_distance

    g = torch.Generator().manual_seed(0)

    def images(shift):
        x = F.interpolate(torch.rand(16, 3, 8, 8, generator=g), size=64, mode="bicubic", align_corners=False)
        return ((x + shift).clamp(0, 1) * 255).to(torch.uint8)

    a, b = images(0.0), images(0.15)
    fp32 = [inception_features(x, batch_size=16, progress=False) for x in (a, b)]
    fast = [inception_features(x, batch_size=16, progress=False, fast=True) for x in (a, b)]
    assert fast[0].dtype == torch.float32 and fast[0].shape == (16, 2048)
    fid32, fid_fast = frechet_distance(*fp32), frechet_distance(*fast)
    assert fid32 > 1.0 and abs(fid_fast - fid32) / fid32 < 0.01, (fid32, fid_fast)
