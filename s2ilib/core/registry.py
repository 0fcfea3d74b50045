"""The study's methods, declared once: which encoder, which generator, evaluated on what.

A *method* is one row family of the main table. Notebooks, training stages and evaluation read
this registry; adding a method (an ablation variant, another baseline) is one
:func:`register_method` call, not edits in several tables.

* ``encoder``: the encoder run that embeds the query (``speech_ts`` teacher-student speech,
  ``speech_cls`` classifier-based speech, ``text_ts`` teacher-student text).
* ``generator``: the generator run folder it uses; methods may share one (two-stage reuses the
  text generator on ASR transcripts).
* ``query``: what is fed to the encoder at test time: ``speech`` (the utterance), ``asr``
  (Whisper's transcript of it) or ``text`` (the ground-truth caption).
* ``conditions``: the evaluation conditions (``seen`` / ``unseen`` voices, or ``groundtruth_text``:
  the ground-truth captions of the ``seen`` queries; the name the results and reports use).
* ``overrides``: config keys that make the method a variant of another (ablations), applied on
  top of the preset for its generator and encoder runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SPEECH_CONDITIONS = ("seen", "unseen")
TEXT_CONDITION = "groundtruth_text"
QUERIES = ("speech", "asr", "text")


class RegistryError(ValueError):
    """An unknown method or encoder name, or a method declared inconsistently."""


@dataclass(frozen=True)
class Encoder:
    name: str
    input: str  # "speech" | "text"
    objective: str  # "teacher_student" | "classifier"
    label: str


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    encoder: str
    generator: str
    query: str
    conditions: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def trains_generator(self) -> bool:
        """True for the method that owns its generator folder (others reuse it)."""
        return self.generator == self.name


ENCODERS: dict[str, Encoder] = {}
METHODS: dict[str, Method] = {}


def register_encoder(enc: Encoder) -> Encoder:
    if enc.input not in ("speech", "text"):
        raise RegistryError(f"encoder {enc.name!r}: input must be 'speech' or 'text', got {enc.input!r}")
    ENCODERS[enc.name] = enc
    return enc


def register_method(m: Method) -> Method:
    """Declare a method; its encoder must be registered and its query must fit the encoder."""
    if m.encoder not in ENCODERS:
        raise RegistryError(f"method {m.name!r}: unknown encoder {m.encoder!r}; known {sorted(ENCODERS)}")
    if m.query not in QUERIES:
        raise RegistryError(f"method {m.name!r}: query must be one of {QUERIES}, got {m.query!r}")
    wants_text = m.query in ("asr", "text")
    if wants_text != (ENCODERS[m.encoder].input == "text"):
        raise RegistryError(f"method {m.name!r}: a {m.query!r} query cannot go through the "
                            f"{ENCODERS[m.encoder].input} encoder {m.encoder!r}")
    bad = [c for c in m.conditions if c not in (*SPEECH_CONDITIONS, TEXT_CONDITION)]
    if bad or not m.conditions:
        raise RegistryError(f"method {m.name!r}: conditions {m.conditions} (allowed: "
                            f"{(*SPEECH_CONDITIONS, TEXT_CONDITION)})")
    METHODS[m.name] = m
    return m


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise RegistryError(f"unknown method {name!r}; choose from {list(METHODS)}") from None


def encoder(name: str) -> Encoder:
    try:
        return ENCODERS[name]
    except KeyError:
        raise RegistryError(f"unknown encoder {name!r}; choose from {list(ENCODERS)}") from None


def method_names() -> tuple[str, ...]:
    """Every registered method in declaration order (the order of the main table)."""
    return tuple(METHODS)


def generator_methods() -> tuple[str, ...]:
    """Methods that train a generator of their own (the others reuse one of these)."""
    return tuple(n for n, m in METHODS.items() if m.trains_generator)


def encoder_names() -> tuple[str, ...]:
    return tuple(ENCODERS)


# The paper's methods (Table I/II): direct speech-to-image, the two-stage cascade, the
# classifier-based encoder, and the text-to-image upper bound.
register_encoder(Encoder("speech_ts", "speech", "teacher_student", "speech, teacher-student"))
register_encoder(Encoder("speech_cls", "speech", "classifier", "speech, classifier-based"))
register_encoder(Encoder("text_ts", "text", "teacher_student", "text, teacher-student"))

register_method(Method("one_stage", "one-stage (speech)", "speech_ts", "one_stage", "speech", SPEECH_CONDITIONS))
register_method(Method("two_stage", "two-stage (ASR + text)", "text_ts", "text", "asr", SPEECH_CONDITIONS))
register_method(Method("classifier", "classifier-based encoder", "speech_cls", "classifier", "speech",
                       SPEECH_CONDITIONS))
register_method(Method("text", "text-to-image (upper bound)", "text_ts", "text", "text", (TEXT_CONDITION,)))
# The authors' StackGAN-v2 recipe on the same speech embeddings, for presets that train every other
# generator with another recipe (small: contrastive): the main table shows what the recipe changes.
# Where the preset already uses it (paper), the row would repeat one_stage and the notebooks drop it
# (s2ilib.study.stages.study_methods).
register_method(Method("one_stage_authors", "one-stage, authors' recipe (StackGAN-v2)", "speech_ts",
                       "one_stage_authors", "speech", ("seen",), overrides={"gan.recipe": "stackgan2"}))
