"""Species (classes) of the embedded datasets and the attributes of their images.

A *species* is a prototype assignment of attribute values; each image draws its own attributes
from the prototype with a little within-class variation (:func:`sample_attributes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2ilib.data.vocab import NUMBER_WORDS, vocabulary


# ----------------------------------------------------------------------------- species

_COLOUR_ADJ = {
    "red": ["Crimson", "Scarlet", "Ruby", "Vermilion"],
    "orange": ["Amber", "Tangerine", "Flame", "Copper"],
    "yellow": ["Golden", "Lemon", "Citrine", "Saffron"],
    "green": ["Emerald", "Olive", "Jade", "Verdant"],
    "blue": ["Azure", "Cobalt", "Sapphire", "Cerulean"],
    "purple": ["Violet", "Amethyst", "Plum", "Mauve"],
    "pink": ["Rosy", "Coral", "Blush", "Flamingo"],
    "brown": ["Russet", "Chestnut", "Umber", "Hazel"],
    "black": ["Sable", "Ebony", "Jet", "Raven"],
    "white": ["Snowy", "Ivory", "Pearl", "Frosted"],
    "grey": ["Ashy", "Slate", "Silver", "Dusky"],
}
_BIRD_NOUNS = ["Finch", "Warbler", "Sparrow", "Tanager", "Bunting", "Wren", "Thrush", "Flycatcher",
               "Grosbeak", "Oriole", "Vireo", "Kingbird", "Jay", "Robin", "Starling", "Swallow", "Pipit",
               "Shrike", "Waxwing", "Chat", "Sunbird", "Honeyeater", "Seedeater", "Babbler"]
_BIRD_PART_SUFFIX = {"head": "crowned", "breast": "breasted", "wings": "winged", "tail": "tailed"}
_FLOWER_NOUNS = ["Starwort", "Lily", "Daisy", "Aster", "Bellflower", "Campion", "Poppy", "Primrose",
                 "Anemone", "Marigold", "Buttercup", "Cosmos", "Orchid", "Clematis", "Gentian", "Crocus",
                 "Windflower", "Stitchwort", "Catchfly", "Rockrose", "Cinquefoil", "Saxifrage"]


@dataclass(frozen=True)
class Species:
    """One class: display name, folder name, prototype attributes and split ("train"/"test")."""

    index: int  # 0-based class number
    name: str  # "Crimson Finch"
    class_dir: str  # "001.Crimson_Finch" (birds) or "class_00001" (flowers)
    prototype: dict[str, str]
    split: str


def _bird_name(proto: dict[str, str], rng: np.random.Generator) -> str:
    noun = str(rng.choice(_BIRD_NOUNS))
    style = int(rng.integers(4))
    if style == 0:  # "Crimson Finch" from the head or breast colour
        return f"{rng.choice(_COLOUR_ADJ[proto[str(rng.choice(['head', 'breast']))]])} {noun}"
    if style == 1:  # "Azure-winged Warbler"
        part = str(rng.choice(list(_BIRD_PART_SUFFIX)))
        return f"{rng.choice(_COLOUR_ADJ[proto[part]])}-{_BIRD_PART_SUFFIX[part]} {noun}"
    if style == 2:  # "Lesser Golden Wren" from size
        size = "Lesser" if proto["size"] == "small" else str(rng.choice(["Great", "Greater"]))
        return f"{size} {rng.choice(_COLOUR_ADJ[proto['head']])} {noun}"
    bill = "Long-billed" if proto["length"] == "long" else str(rng.choice(["Short-billed", "Thick-billed"]))
    return f"{rng.choice(_COLOUR_ADJ[proto['breast']])} {bill} {noun}"


def _flower_name(proto: dict[str, str], rng: np.random.Generator) -> str:
    noun = str(rng.choice(_FLOWER_NOUNS))
    style = int(rng.integers(3))
    if style == 0:  # "Golden Starwort"
        return f"{rng.choice(_COLOUR_ADJ[proto['petal']])} {noun}"
    if style == 1:  # "Amber-eyed Aster"
        return f"{rng.choice(_COLOUR_ADJ[proto['centre']])}-eyed {rng.choice(_COLOUR_ADJ[proto['petal']])} {noun}"
    prefix = "Star" if proto["shape"] == "pointed" else str(rng.choice(["Cup", "Button"]))
    return f"{prefix} {rng.choice(_COLOUR_ADJ[proto['petal']])} {noun}"


def _species_name(kind: str, proto: dict[str, str], used: set[str], rng: np.random.Generator) -> str:
    """A plausible name reflecting the prototype, unique among ``used``."""
    make = _bird_name if kind == "birds" else _flower_name
    for _ in range(200):
        name = make(proto, rng)
        if name not in used:
            return name
    base, k = make(proto, rng), 2
    while f"{base} {k}" in used:
        k += 1
    return f"{base} {k}"


def _cover_columns(vocab: dict[str, list[str]], n: int, rng: np.random.Generator) -> dict[str, list[str]]:
    """Per attribute, ``n`` values that use every value at least once when ``n`` allows."""
    cols = {}
    for attr, values in vocab.items():
        reps = -(-n // len(values))
        col = [v for _ in range(reps) for v in rng.permutation(values).tolist()][:n]
        cols[attr] = rng.permutation(col).tolist()
    return cols


def _make_distinct(protos: list[dict[str, str]], rng: np.random.Generator) -> None:
    """Swap attribute values between prototypes until no two are identical (keeps coverage)."""
    attrs = list(protos[0]) if protos else []
    for _ in range(100000):
        seen: dict[tuple, int] = {}
        dup = None
        for i, p in enumerate(protos):
            key = tuple(p[a] for a in attrs)
            if key in seen:
                dup = i
                break
            seen[key] = i
        if dup is None:
            return
        a, j = str(rng.choice(attrs)), int(rng.integers(len(protos)))
        protos[dup][a], protos[j][a] = protos[j][a], protos[dup][a]
    raise RuntimeError("could not make class prototypes distinct; too many classes for the vocabulary")


def _space_size(vocab: dict[str, list[str]]) -> int:
    return int(np.prod([len(v) for v in vocab.values()], dtype=np.float64))


def make_classes(kind: str, n_train: int, n_test: int, rng: np.random.Generator) -> list[Species]:
    """Species of a dataset: ``n_train`` training classes then ``n_test`` unseen (zero-shot) classes.

    Training prototypes cover every attribute value when ``n_train`` is at least the number of
    values of that attribute (otherwise as many distinct values as there are classes); test
    prototypes only use values present in training prototypes, so every value a test image can
    show was seen in training. No two prototypes are identical.
    """
    vocab = vocabulary(kind)
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train}, {n_test}")
    if n_train + n_test > _space_size(vocab):
        raise ValueError(f"{n_train + n_test} {kind} classes exceed the {_space_size(vocab)} distinct prototypes")
    cols = _cover_columns(vocab, n_train, rng)
    train = [{a: cols[a][i] for a in vocab} for i in range(n_train)]
    _make_distinct(train, rng)
    seen_values = train_values(train)
    if n_test and n_train + n_test > _space_size(seen_values):
        raise ValueError(f"{n_test} test classes do not fit the values covered by {n_train} training classes")
    used = {tuple(p.values()) for p in train}
    test = []
    while len(test) < n_test:
        proto = {a: str(rng.choice(seen_values[a])) for a in vocab}
        if tuple(proto.values()) not in used:
            used.add(tuple(proto.values()))
            test.append(proto)
    species, names = [], set()
    for i, proto in enumerate(train + test):
        name = _species_name(kind, proto, names, rng)
        names.add(name)
        class_dir = f"{i + 1:03d}.{name.replace(' ', '_').replace('-', '_')}" if kind == "birds" else f"class_{i + 1:05d}"
        species.append(Species(i, name, class_dir, proto, "train" if i < n_train else "test"))
    return species


def train_values(protos: list[dict[str, str]]) -> dict[str, list[str]]:
    """Values present in some prototype, per attribute, in vocabulary order."""
    if not protos:
        return {}
    kind = "birds" if "head" in protos[0] else "flowers"
    vocab = vocabulary(kind)
    present = {a: {p[a] for p in protos} for a in vocab}
    return {a: [v for v in vocab[a] if v in present[a]] for a in vocab}


def sample_attributes(proto: dict[str, str], rng: np.random.Generator, p_change: float = 0.08,
                      allowed: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Attributes of one image of a species: each value re-drawn with probability ``p_change``.

    ``allowed`` restricts re-drawn values (the builder passes the values seen in training classes);
    a petal count moves to a neighbouring number rather than anywhere.
    """
    kind = "birds" if "head" in proto else "flowers"
    allowed = allowed or vocabulary(kind)
    out = dict(proto)
    for attr, value in proto.items():
        if rng.random() >= p_change:
            continue
        choices = [v for v in allowed[attr] if v != value]
        if attr == "count":
            i = NUMBER_WORDS.index(value)
            choices = [v for v in choices if abs(NUMBER_WORDS.index(v) - i) == 1]
        if choices:
            out[attr] = str(rng.choice(choices))
    return out

