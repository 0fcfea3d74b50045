"""Attribute reader: learns a trivially visible toy task; mention accuracy and the shuffled floor."""
import math

import pytest
import torch

from s2ilib.evaluation import attribute_reader as AR

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
VOCAB = {"colour": list(COLOURS), "size": ["small", "large"]}


def toy_images(n: int, seed: int = 0, size: int = 32):
    """Grey images with one coloured square: colour and size of the square are the attributes."""
    gen = torch.Generator().manual_seed(seed)
    imgs = torch.full((n, 3, size, size), 128, dtype=torch.uint8)
    attrs = []
    for i in range(n):
        colour = VOCAB["colour"][int(torch.randint(4, (1,), generator=gen))]
        big = bool(torch.randint(2, (1,), generator=gen))
        side = size * 3 // 4 if big else size // 4
        x0, y0 = torch.randint(0, size - side + 1, (2,), generator=gen).tolist()
        imgs[i, :, y0:y0 + side, x0:x0 + side] = torch.tensor(COLOURS[colour], dtype=torch.uint8).view(3, 1, 1)
        attrs.append({"colour": colour, "size": "large" if big else "small"})
    return imgs, attrs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(2)
    imgs, attrs = toy_images(200, seed=1)
    path = tmp_path_factory.mktemp("reader") / "reader.pt"
    reader, report = AR.train_attribute_reader(imgs, attrs, VOCAB, epochs=10, seed=0, out_path=path,
                                               progress=False, image_size=32, width=16, batch_size=32)
    return reader, report, path


def test_reader_learns_visible_attributes(trained):
    reader, report, _ = trained
    # Colour and size of a square are trivially visible: held-out accuracy must be near 1 (colour
    # 0.90-0.975, size 1.0 over seeds 0-2), far above the majority-class chance level (~0.25 / ~0.5).
    assert report["n_holdout"] == 40 and report["n_train"] == 160
    assert report["holdout_accuracy"]["colour"] > 0.85, report
    assert report["holdout_accuracy"]["size"] > 0.85, report
    assert report["holdout_accuracy"]["colour"] > report["chance_majority"]["colour"] + 0.4


def test_read_and_mention_accuracy_on_fresh_images(trained):
    reader, _, _ = trained
    imgs, attrs = toy_images(40, seed=7)
    read = AR.read_attributes(reader, imgs)
    assert set(read[0]) == {"colour", "size"}
    value, prob = read[0]["colour"]
    assert value in VOCAB["colour"] and 0.25 <= prob <= 1.0
    mentioned = [{"colour": a["colour"]} for a in attrs]
    assert AR.attribute_accuracy(reader, imgs, mentioned) > 0.9
    # Mentions of other captions: the floor falls toward chance (1/4 colours, same-colour pairs allowed).
    floor, _ = AR.shuffled_attribute_accuracy(reader, imgs, mentioned, seed=0, repeats=3)
    assert floor < 0.5


def test_save_load_keeps_vocabulary_and_predictions(trained):
    reader, report, path = trained
    loaded = AR.load_attribute_reader(path)
    assert loaded.vocabulary == VOCAB and loaded.report["holdout_accuracy"] == report["holdout_accuracy"]
    imgs, _ = toy_images(8, seed=3)
    assert AR.read_attributes(loaded, imgs) == AR.read_attributes(reader, imgs)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        AR.load_attribute_reader(path.parent / "nothing.pt")


def test_mention_accuracy_counts_pairs():
    read = [{"colour": ("red", 0.9), "size": ("large", 0.8)},
            {"colour": ("blue", 0.7), "size": ("small", 0.6)},
            {"colour": "green", "size": "small"}]
    mentioned = [{"colour": "red", "size": "small"},  # 1 of 2
                 {"colour": "blue"},                  # 1 of 1
                 {}]                                  # nothing mentioned: no weight
    out = AR.mention_accuracy(read, mentioned)
    assert out["n_mentions"] == 3
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["per_attribute"] == {"colour": 1.0, "size": 0.0}
    assert math.isnan(AR.mention_accuracy(read[:1], [{}])["accuracy"])
    with pytest.raises(KeyError, match="beak"):
        AR.mention_accuracy(read[:1], [{"beak": "red"}])


def test_encode_attributes_rejects_unknown_values_and_ignores_missing():
    y = AR.encode_attributes([{"colour": "blue"}, {"size": "large"}], VOCAB)
    assert y["colour"].tolist() == [2, AR.IGNORE] and y["size"].tolist() == [AR.IGNORE, 1]
    with pytest.raises(ValueError, match="purple"):
        AR.encode_attributes([{"colour": "purple"}], VOCAB)


def test_derangement_has_no_fixed_point():
    for seed in range(20):
        p = AR.derangement(5, seed)
        assert sorted(p.tolist()) == list(range(5)) and not (p == torch.arange(5)).any()
    shuffled = AR.shuffled_mentions([{"a": "x"}, {"a": "y"}], seed=0)
    assert shuffled == [{"a": "y"}, {"a": "x"}]
