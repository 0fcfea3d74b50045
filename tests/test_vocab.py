"""Attribute vocabulary, species and captions of the synthetic datasets (s2ilib.data.vocab, species, captions)."""
import re

import numpy as np
import pytest

from s2ilib.data.captions import make_captions
from s2ilib.data.species import make_classes, sample_attributes
from s2ilib.data.vocab import (
    COLOUR_ATTRIBUTES,
    COLOUR_WORDS,
    COLOURS,
    NUMBER_WORDS,
    VALUE_WORDS,
    attribute_names,
    describe_colour,
    nearest_colour,
    shade_colour,
    vocabulary,
)

REQUIRED_COLOURS = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey"}


def test_vocabulary_contents():
    assert REQUIRED_COLOURS <= set(COLOURS)
    birds = vocabulary("birds")
    assert attribute_names("birds") == ["head", "breast", "wings", "tail", "beak", "size", "length"]
    assert set(birds["head"]) == REQUIRED_COLOURS and birds["size"] == ["small", "large"]
    assert birds["length"] == ["short", "long"]
    flowers = vocabulary("flowers")
    assert attribute_names("flowers") == ["petal", "centre", "count", "shape"]
    assert flowers["count"] == ["three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    assert flowers["shape"] == ["pointed", "rounded"]
    vocabulary("birds")["head"].append("x")  # a copy: the module's vocabulary is unchanged
    assert "x" not in vocabulary("birds")["head"]
    with pytest.raises(ValueError, match="unknown dataset kind"):
        vocabulary("fish")


def test_shades_stay_within_their_name():
    rng = np.random.default_rng(0)
    for name in COLOURS:
        shades = [shade_colour(name, rng) for _ in range(300)]
        assert all(nearest_colour(s) == name for s in shades), name
        assert len(set(shades)) > 50  # real jitter, not one colour
    # the base colours are far apart (a reader at 32 px must tell them apart)
    base = np.array(list(COLOURS.values()), float)
    d = np.sqrt(((base[:, None] - base[None]) ** 2).sum(-1)) + np.eye(len(base)) * 1e9
    assert d.min() > 80


@pytest.mark.parametrize("kind,n_train,n_test", [("birds", 150, 50), ("flowers", 82, 20)])
def test_classes_cover_vocabulary_and_are_distinct(kind, n_train, n_test):
    species = make_classes(kind, n_train, n_test, np.random.default_rng(3))
    assert len(species) == n_train + n_test
    train = [s for s in species if s.split == "train"]
    test = [s for s in species if s.split == "test"]
    assert len(train) == n_train and len(test) == n_test
    assert all(s.split == "train" for s in species[:n_train])  # training classes come first
    vocab = vocabulary(kind)
    for attr, values in vocab.items():  # every single value appears in a training class
        assert {s.prototype[attr] for s in train} == set(values), attr
    protos = [tuple(s.prototype.values()) for s in species]
    assert len(set(protos)) == len(protos)
    names = [s.name for s in species]
    assert len(set(names)) == len(names)
    assert len({s.class_dir for s in species}) == len(species)
    if kind == "birds":
        assert re.fullmatch(r"001\.[A-Za-z_]+", species[0].class_dir)
        assert " " not in species[0].class_dir and species[0].class_dir[4:].replace("_", " ") in species[0].name.replace("-", " ")
    else:
        assert species[0].class_dir == "class_00001" and species[-1].class_dir == f"class_{n_train + n_test:05d}"


def test_few_training_classes_still_cover_test_values():
    for seed in range(5):
        species = make_classes("flowers", 5, 3, np.random.default_rng(seed))
        train = [s.prototype for s in species if s.split == "train"]
        for s in species[5:]:
            for attr, v in s.prototype.items():
                assert v in {p[attr] for p in train}
        assert len({tuple(s.prototype.values()) for s in species}) == 8


def test_too_many_classes_is_an_error():
    with pytest.raises(ValueError, match="distinct prototypes"):
        make_classes("flowers", 5000, 10, np.random.default_rng(0))


def test_sample_attributes_variation():
    rng = np.random.default_rng(1)
    proto = {"petal": "pink", "centre": "yellow", "count": "five", "shape": "pointed"}
    assert sample_attributes(proto, rng, p_change=0.0) == proto
    allowed = {"petal": ["pink", "blue"], "centre": ["yellow"], "count": NUMBER_WORDS, "shape": ["pointed", "rounded"]}
    samples = [sample_attributes(proto, rng, p_change=0.3, allowed=allowed) for _ in range(500)]
    assert {s["petal"] for s in samples} == {"pink", "blue"}
    assert {s["centre"] for s in samples} == {"yellow"}
    assert {s["count"] for s in samples} == {"four", "five", "six"}  # counts move to a neighbour
    same = np.mean([s == proto for s in samples])
    assert 0.1 < same < 0.5  # (0.7^3 ~ 0.34: three attributes can change)


def _caption_values(text: str) -> dict[str, set]:
    """Values named in a caption, by type (colour words, size, length, shape, count)."""
    words = re.findall(r"[a-z]+", text)
    out = {"colour": {COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS}}
    for attr, table in VALUE_WORDS.items():
        out[attr] = {table[w] for w in words if w in table}
    return out


@pytest.mark.parametrize("kind", ["birds", "flowers"])
def test_captions_are_true_and_varied(kind):
    rng = np.random.default_rng(7)
    vocab = vocabulary(kind)
    n_mentions = []
    for _ in range(300):
        attrs = {a: str(rng.choice(v)) for a, v in vocab.items()}
        caps = make_captions(kind, attrs, 10, rng)
        assert len(caps) == 10 and len({t for t, _ in caps}) == 10
        for text, mentioned in caps:
            assert text == text.lower() and "  " not in text and text.strip() == text
            assert not ("grey" in text and "gray" in text)  # one spelling per caption
            assert 2 <= len(mentioned) <= 5
            n_mentions.append(len(mentioned))
            assert all(attrs[a] == v for a, v in mentioned.items()), (text, mentioned, attrs)
            named = _caption_values(text)
            # every colour word of the caption is a mentioned (true) colour, and each is said
            colours = {mentioned[a] for a in COLOUR_ATTRIBUTES[kind] if a in mentioned}
            assert named["colour"] == colours, (text, mentioned)
            for attr in VALUE_WORDS:
                if attr in vocab:
                    expected = {mentioned[attr]} if attr in mentioned else set()
                    assert named[attr] == expected, (text, mentioned)
            if kind == "birds":
                for part, words in {"head": ("crown", "head"), "breast": ("breast", "belly"),
                                    "wings": ("wing",), "tail": ("tail",)}.items():
                    assert (part in mentioned) == any(w in text for w in words), (text, mentioned)
            else:
                assert ("centre" in mentioned) == any(w in text for w in ("center", "centre", "middle"))
    # the whole 2..5 range is used (flowers have only 4 attributes)
    assert set(n_mentions) == ({2, 3, 4, 5} if kind == "birds" else {2, 3, 4})


def test_caption_templates_are_many():
    rng = np.random.default_rng(0)
    attrs = {"head": "red", "breast": "white", "wings": "blue", "tail": "black", "beak": "yellow",
             "size": "small", "length": "short"}
    texts = {t for _ in range(100) for t, _ in make_captions("birds", attrs, 10, rng)}
    openings = {" ".join(t.split()[:2]) for t in texts}
    assert len(texts) > 500 and len(openings) > 15
    assert describe_colour("grey", np.random.default_rng(0)) in ("grey", "gray")
