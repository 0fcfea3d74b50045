"""Captions written like Reed et al.'s CUB / Oxford-102 descriptions (lowercase, 2-5 facts).

A caption only ever states attributes that are true of the image; each carries the dict of the
attributes it mentions, which later stages use to score semantic consistency.
"""
from __future__ import annotations

import re

import numpy as np

from s2ilib.data.vocab import describe_colour


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
