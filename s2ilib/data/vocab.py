"""Attribute vocabulary, species and captions of the embedded datasets ``synth-birds`` / ``synth-flowers``.

A *species* (class) is a prototype assignment of attribute values; each image draws its own
attributes from the prototype with a little within-class variation (:func:`sample_attributes`).
Captions are written like Reed et al.'s CUB / Oxford-102 descriptions (lowercase, 2-5 facts) and
only ever state attributes that are true of the image; each caption carries the dict of the
attributes it mentions, which later stages use to score semantic consistency.

Every value is a plain lowercase string (colour names, ``small``/``large``, number words...), so
attributes serialise to JSON as they are.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

RGB = tuple[int, int, int]

# Base RGB of each named colour. Chosen far apart in RGB so that a shade jittered within its
# name (and lit by the renderer) is still nearest its own base (see :func:`nearest_colour`).
COLOURS: dict[str, RGB] = {
    "red": (205, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 220, 45),
    "green": (45, 155, 55),
    "blue": (35, 85, 215),
    "purple": (125, 45, 165),
    "pink": (245, 140, 190),
    "brown": (115, 70, 35),
    "black": (25, 25, 28),
    "white": (242, 242, 238),
    "grey": (130, 130, 132),
}

# Words that may stand for a colour in a caption (the reverse map is COLOUR_WORDS).
COLOUR_SYNONYMS: dict[str, list[str]] = {c: [c] for c in COLOURS}
COLOUR_SYNONYMS["grey"] = ["grey", "gray"]
COLOUR_WORDS: dict[str, str] = {w: c for c, ws in COLOUR_SYNONYMS.items() for w in ws}

NUMBER_WORDS = ["three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]

BEAK_COLOURS = ["black", "grey", "yellow", "orange", "red", "brown", "white", "pink"]
PETAL_COLOURS = ["red", "orange", "yellow", "blue", "purple", "pink", "white"]
CENTRE_COLOURS = ["yellow", "orange", "brown", "black", "green", "white", "red", "purple"]

VOCAB_BIRDS: dict[str, list[str]] = {
    "head": list(COLOURS),
    "breast": list(COLOURS),
    "wings": list(COLOURS),
    "tail": list(COLOURS),
    "beak": BEAK_COLOURS,
    "size": ["small", "large"],
    "length": ["short", "long"],  # beak length
}
VOCAB_FLOWERS: dict[str, list[str]] = {
    "petal": PETAL_COLOURS,
    "centre": CENTRE_COLOURS,
    "count": NUMBER_WORDS,
    "shape": ["pointed", "rounded"],
}
COLOUR_ATTRIBUTES = {"birds": ["head", "breast", "wings", "tail", "beak"], "flowers": ["petal", "centre"]}

# Other words a caption may use for an attribute value (used by tests and attribute readers).
VALUE_WORDS: dict[str, dict[str, str]] = {
    "size": {"small": "small", "tiny": "small", "little": "small", "large": "large", "big": "large"},
    "length": {"short": "short", "stubby": "short", "long": "long"},
    "shape": {"pointed": "pointed", "pointy": "pointed", "point": "pointed", "rounded": "rounded", "round": "rounded"},
    "count": {w: w for w in NUMBER_WORDS},
}


def vocabulary(kind: str) -> dict[str, list[str]]:
    """``{attribute: [values...]}`` of ``kind`` ("birds" or "flowers"); a fresh copy."""
    if kind == "birds":
        return {k: list(v) for k, v in VOCAB_BIRDS.items()}
    if kind == "flowers":
        return {k: list(v) for k, v in VOCAB_FLOWERS.items()}
    raise ValueError(f"unknown dataset kind {kind!r}; expected 'birds' or 'flowers'")


def attribute_names(kind: str) -> list[str]:
    """Attribute names of ``kind`` in a fixed order (the heads of an attribute reader)."""
    return list(vocabulary(kind))


# ----------------------------------------------------------------------------- colours

def shade_colour(name: str, rng: np.random.Generator) -> RGB:
    """A random shade of the named colour: brightness x[0.9, 1.08] and +-10 per channel.

    The jitter is small enough that :func:`nearest_colour` still returns ``name``.
    """
    base = np.array(COLOURS[name], dtype=np.float64)
    rgb = base * rng.uniform(0.9, 1.08) + rng.uniform(-10, 10, size=3)
    return tuple(int(v) for v in np.clip(np.round(rgb), 0, 255))


def nearest_colour(rgb: Any, names: list[str] | None = None) -> str:
    """Name of the vocabulary colour nearest (Euclidean RGB) to ``rgb`` (3 numbers, 0-255)."""
    names = names or list(COLOURS)
    x = np.asarray(rgb, dtype=np.float64)
    dists = [float(np.sum((x - np.array(COLOURS[n])) ** 2)) for n in names]
    return names[int(np.argmin(dists))]


def describe_colour(name: str, rng: np.random.Generator) -> str:
    """A word for a colour in a caption (``grey`` is sometimes ``gray``)."""
    return str(rng.choice(COLOUR_SYNONYMS[name]))


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


# ----------------------------------------------------------------------------- captions

def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


_BIRD_PART_WORDS = {  # (word, is_plural)
    "head": [("crown", False), ("head", False)],
    "breast": [("breast", False), ("belly", False)],
    "wings": [("wings", True), ("wing feathers", True)],
    "tail": [("tail", False), ("tail feathers", True)],
    "beak": [("beak", False), ("bill", False)],
}
_SIZE_WORDS = {"small": ["small", "small", "tiny", "little"], "large": ["large", "large", "big"]}
_LENGTH_WORDS = {"short": ["short", "short", "stubby"], "long": ["long"]}


def _bird_parts(m: dict[str, str], rng: np.random.Generator) -> list[tuple[str, bool, list[str]]]:
    """Parts a caption talks about: (part word, plural, adjectives) with beak length merged into the beak."""
    parts = []
    for part in ["head", "breast", "wings", "tail", "beak"]:
        has_len = part == "beak" and "length" in m
        if part not in m and not has_len:
            continue
        word, plural = _BIRD_PART_WORDS[part][int(rng.integers(len(_BIRD_PART_WORDS[part])))]
        adjs = [str(rng.choice(_LENGTH_WORDS[m["length"]]))] if has_len else []
        if part in m:
            adjs.append(describe_colour(m[part], rng))
        parts.append((word, plural, adjs))
    order = rng.permutation(len(parts))
    return [parts[i] for i in order]


def _bird_np(word: str, plural: bool, adjs: list[str], rng: np.random.Generator) -> str:
    phrase = " ".join(adjs + [word])
    return phrase if plural or rng.random() < 0.2 else _article(phrase)


def _bird_clause(word: str, plural: bool, adjs: list[str], rng: np.random.Generator) -> str:
    det = str(rng.choice(["the", "its"]))
    return f"{det} {word} {'are' if plural else 'is'} {' and '.join(adjs)}"


def _bird_caption(m: dict[str, str], rng: np.random.Generator) -> str:
    """One CUB-style sentence stating exactly the attributes in ``m``."""
    size = str(rng.choice(_SIZE_WORDS[m["size"]])) if "size" in m else None
    parts = _bird_parts(m, rng)
    nps = [_bird_np(*p, rng) for p in parts]
    style = int(rng.integers(7))
    if size is None:
        subj = str(rng.choice(["this bird", "the bird", "this particular bird"]))
        with_subj = str(rng.choice(["a bird", "bird", "this is a bird"]))
    else:
        subj = str(rng.choice([f"this {size} bird", f"the {size} bird", f"this {size} bird"]))
        with_subj = str(rng.choice([f"a {size} bird", f"{size} bird", f"this is a {size} bird"]))
    if style == 0 or (style >= 4 and len(parts) < 2):
        return f"{subj} has {_join(nps)}"
    if style == 1:
        return f"{with_subj} with {_join(nps)}"
    if style == 2:  # all clauses: "the wings are blue, the belly is white and the bill is short"
        clauses = [_bird_clause(*p, rng) for p in parts]
        if size:
            clauses.insert(0, f"this bird is {size}")
        return _join(clauses)
    if style == 3:  # "this bird is small and has ..." / "this bird has ... and is small"
        if size is None:
            return f"{subj} has {_join(nps)}"
        if rng.random() < 0.5:
            return f"this bird is {size} and has {_join(nps)}"
        return f"this bird has {_join(nps)} and is {size}"
    k = int(rng.integers(1, len(parts)))
    head_nps, rest = nps[:k], parts[k:]
    tail = _join([_bird_clause(*p, rng) for p in rest])
    if style == 4:  # "this bird has a red crown, and its wings are blue"
        return f"{subj} has {_join(head_nps)}, and {tail}"
    if style == 5:  # two sentences
        return f"{with_subj} with {_join(head_nps)}. {tail}"
    # "blue wings and a white belly, the bill is short"
    lead = f"{_join(head_nps)} on this {size} bird" if size else _join(head_nps)
    return f"{lead}, {tail}" if rng.random() < 0.5 else f"{lead} and {tail}"


_SHAPE_ADJ = {"pointed": ["pointed", "pointy", "pointed"], "rounded": ["rounded", "round", "rounded"]}
_SHAPE_POST = {"pointed": ["with pointed tips", "that come to a point"],
               "rounded": ["with rounded tips", "with round edges"]}
_CENTRE_WORDS = ["center", "center", "centre", "middle"]


def _petal_np(m: dict[str, str], rng: np.random.Generator, colour: bool = True) -> str:
    """``"five pointed pink petals"``, or ``"pink petals with rounded tips"``."""
    words = [m["count"]] if "count" in m else []
    post = ""
    if "shape" in m:
        if rng.random() < 0.7:
            words.append(str(rng.choice(_SHAPE_ADJ[m["shape"]])))
        else:
            post = " " + str(rng.choice(_SHAPE_POST[m["shape"]]))
    if colour and "petal" in m:
        words.append(describe_colour(m["petal"], rng))
    return " ".join(words + ["petals"]) + post


def _centre_np(m: dict[str, str], rng: np.random.Generator) -> str:
    return _article(f"{describe_colour(m['centre'], rng)} {rng.choice(_CENTRE_WORDS)}")


def _flower_caption(m: dict[str, str], rng: np.random.Generator) -> str:
    """One Oxford-102-style sentence (Reed et al.) stating exactly the attributes in ``m``."""
    has_petals = any(a in m for a in ("petal", "count", "shape"))
    centre = _centre_np(m, rng) if "centre" in m else None
    style = int(rng.integers(7))
    if not has_petals:  # only the centre (cannot happen with >= 2 mentions, kept for safety)
        return f"this flower has {centre}"
    if style == 0 or (style in (3, 4) and centre is None):
        lead = str(rng.choice(["this flower has", "the flower has", "a flower with", "flower with"]))
        return f"{lead} {_petal_np(m, rng)}" + (f" and {centre}" if centre else "")
    if style == 1 and "petal" in m:  # "this pink flower has five pointed petals and a yellow center"
        c = describe_colour(m["petal"], rng)
        rest = _petal_np(m, rng, colour=False)
        if rest == "petals" and centre:
            return f"this {c} flower has {centre}"
        lead = f"this {c} flower has {rest}" if rest != "petals" else f"this flower is {c}"
        return lead + (f" and {centre}" if centre else "")
    if style == 2 and "petal" in m:  # clauses: "the petals are pink and pointed, and the center is yellow"
        adj = [describe_colour(m["petal"], rng)]
        if "shape" in m:
            adj.append(str(rng.choice(_SHAPE_ADJ[m["shape"]])))
        text = f"the petals {rng.choice(['are', 'of this flower are'])} {' and '.join(adj)}"
        if "count" in m:
            text = f"this flower has {m['count']} petals, " + text
        if centre:
            text += f", and the {rng.choice(_CENTRE_WORDS)} is {describe_colour(m['centre'], rng)}"
        return text
    if style == 3:  # "a yellow center surrounded by five pink petals"
        verb = str(rng.choice(["surrounded by", "encircled by", "ringed by"]))
        return f"{centre} {verb} {_petal_np(m, rng)}"
    if style == 4:  # "five pink petals surround a yellow center"
        return f"{_petal_np(m, rng)} {rng.choice(['surround', 'around', 'surrounding'])} {centre}"
    if style == 5 and "count" in m:  # "this flower has five petals that are pink and pointed"
        adj = []
        if "petal" in m:
            adj.append(describe_colour(m["petal"], rng))
        if "shape" in m:
            adj.append(str(rng.choice(_SHAPE_ADJ[m["shape"]])))
        text = f"this flower has {m['count']} petals" + (f" that are {' and '.join(adj)}" if adj else "")
        return text + (f" and {centre}" if centre else "")
    lead = str(rng.choice(["this flower has", "a flower with", "the flower has"]))
    return f"{lead} {centre + ' and ' if centre else ''}{_petal_np(m, rng)}"


def _choose_mentions(attrs: dict[str, str], rng: np.random.Generator) -> dict[str, str]:
    """2-5 attributes of the image to mention (never more than it has)."""
    names = list(attrs)
    k = int(rng.integers(2, min(5, len(names)) + 1))
    chosen = set(rng.choice(names, size=k, replace=False).tolist())
    return {a: attrs[a] for a in names if a in chosen}


def make_captions(kind: str, attrs: dict[str, str], n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, str]]]:
    """``n`` different lowercase captions of one image, each with the attributes it mentions.

    Every caption mentions 2-5 attributes, each with the image's true value (``attrs``).
    """
    write = _bird_caption if kind == "birds" else _flower_caption
    out: list[tuple[str, dict[str, str]]] = []
    texts: set[str] = set()
    for _ in range(200 * n):
        if len(out) == n:
            break
        mentions = _choose_mentions(attrs, rng)
        text = write(mentions, rng).lower()
        # one spelling of grey per caption, as a person would write it
        text = re.sub(r"\bgr[ae]y\b", "gray" if re.search(r"\bgray\b", text) else "grey", text)
        if text not in texts:
            texts.add(text)
            out.append((text, mentions))
    if len(out) < n:
        raise RuntimeError(f"could not write {n} different captions for {attrs}")
    return out
