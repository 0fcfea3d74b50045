"""Types and ranges of the notebooks' own parameters (``s2i study -p key=value``), checked before
papermill starts, so ``-p methods=5`` or ``-p n_noise=-3`` is a one-line usage error (exit 2) naming
the parameter, not a TypeError in cell 4 or an overflow in cell 10 after minutes of training.

Every parameter a study notebook declares besides the common ones
(:data:`s2ilib.study.runner.COMMON_PARAMETERS`) has an entry in :data:`PARAMETERS`
(tests/test_notebook_params.py walks the notebooks): a count with its valid range, a list of names
with the names allowed (some notebooks narrow them), or a schedule checked by its own module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from s2ilib.core.config_ranges import Range
from s2ilib.core.errors import UsageError


class NotebookParameterError(UsageError):
    """A notebook parameter has the wrong type or a value outside its declared range or names."""


@dataclass(frozen=True)
class Param:
    """``kind``: ``count`` (an int within ``range``), ``names`` (a list of names ``allowed(notebook,
    cfg)`` returns) or ``schedule`` (a mapping ``check(value, study)`` validates; ``study``: the
    :class:`Study` the parameter goes to)."""

    kind: str
    why: str
    range: Range | None = None
    allowed: Callable[[str, Any], tuple[str, ...]] | None = None
    empty_ok: bool = False
    check: Callable[[Any, "Study"], None] | None = None


@dataclass(frozen=True)
class Study:
    """What a parameter is checked against: the study's preset, seed, ``--set`` overrides and the
    configuration they resolve to."""

    preset: str
    seed: int
    overrides: dict
    cfg: Any


def _methods(notebook: str, cfg: Any) -> tuple[str, ...]:
    from s2ilib.core import registry

    if notebook.startswith("03"):  # trains generators: two_stage reuses text's
        return registry.generator_methods()
    if notebook.startswith("08"):  # perturbs the spoken query
        return tuple(m for m in registry.method_names() if registry.method(m).query != "text")
    return registry.method_names()


def _encoders(notebook: str, cfg: Any) -> tuple[str, ...]:
    from s2ilib.core import registry

    return registry.encoder_names()


def _built_datasets(notebook: str, cfg: Any) -> tuple[str, ...]:
    return tuple(cfg.data.datasets)


def _loss_rows(notebook: str, cfg: Any) -> tuple[str, ...]:
    from s2ilib.study.ablation import LOSS_ROWS

    return tuple(LOSS_ROWS)


def _ablation_schedule(value: dict, study: Study) -> None:
    from s2ilib.core.config import ConfigError, get_config
    from s2ilib.study.ablation import SCHEDULES, schedule

    preset, cfg = study.preset, study.cfg
    base = SCHEDULES[preset]
    for k, v in value.items():
        if k in base and type(v) is not type(base[k]) and not (isinstance(base[k], float) and type(v) is int):
            raise NotebookParameterError(f"-p schedule: {k!r} expects {type(base[k]).__name__} like "
                                         f"{base[k]!r}, got {type(v).__name__} {v!r}")
    try:
        sched = schedule(preset, value)
    except KeyError as exc:
        raise NotebookParameterError(f"-p schedule: {exc.args[0]}") from None
    for key in ("loss_config", "scale_config"):
        try:
            get_config(preset, {"seed": study.seed, **study.overrides, **sched[key]})
        except ConfigError as exc:
            raise NotebookParameterError(f"-p schedule: {key}: {exc}") from None
    for name in (*value.get("loss_datasets", []), *value.get("scale_datasets", [])):
        if name not in cfg.data.datasets:
            raise NotebookParameterError(f"-p schedule: dataset {name!r} is not one of data.datasets "
                                         f"{cfg.data.datasets}")


def _robust_schedule(value: dict, study: Study) -> None:
    from s2ilib.study.robustness import schedule

    cfg = study.cfg
    try:
        sched = schedule(study.preset, value)
    except KeyError as exc:
        raise NotebookParameterError(f"-p robust_schedule: {exc.args[0]}") from None
    except ValueError as exc:  # an unknown speech condition (PerturbationError)
        raise NotebookParameterError(f"-p robust_schedule: {exc}") from None
    queries = sched["queries"]
    if isinstance(queries, bool) or not isinstance(queries, int) or not 1 <= queries <= 100_000:
        raise NotebookParameterError(f"-p robust_schedule: queries = {queries!r} is out of range: must be an "
                                     "integer in [1, 100000]")
    names = sched["datasets"]
    if not isinstance(names, list) or not names or any(n not in cfg.data.datasets for n in names):
        raise NotebookParameterError(f"-p robust_schedule: datasets = {names!r}: a non-empty list of "
                                     f"data.datasets {cfg.data.datasets}")


def _count(lo: int, hi: int, why: str) -> Param:
    return Param("count", why, Range(lo=lo, hi=hi))


PARAMETERS: dict[str, Param] = {
    "n_show": _count(1, 256, "images per grid"),
    "n_audio": _count(1, 50, "utterances played per dataset"),
    "n_utterances": _count(1, 64, "unseen-class utterances shown"),
    "n_noise": _count(1, 64, "images per utterance"),
    "n_examples": _count(1, 64, "test utterances in the side-by-side figure"),
    "methods": Param("names", "method names of s2ilib.core.registry", allowed=_methods),
    "encoders": Param("names", "encoder names of s2ilib.core.registry", allowed=_encoders),
    "datasets": Param("names", "datasets of data.datasets (empty: the schedule's)", allowed=_built_datasets,
                      empty_ok=True),
    "rows": Param("names", "rows of s2ilib.study.ablation.LOSS_ROWS", allowed=_loss_rows),
    "schedule": Param("schedule", "ablation schedule overrides (s2ilib.study.ablation.SCHEDULES)",
                      check=_ablation_schedule),
    "robust_schedule": Param("schedule", "robustness schedule overrides (s2ilib.study.robustness.SCHEDULES)",
                             check=_robust_schedule),
}


def check_parameter(notebook: str, key: str, value: Any, study: Study) -> None:
    """Refuse ``value`` of parameter ``key`` of ``notebook`` (a stem, ``03_gan_training``) unless it
    has the parameter's declared type and lies in its range or names; :class:`NotebookParameterError`
    names the parameter, the value and what it must be."""
    spec = PARAMETERS.get(key)
    if spec is None:
        raise NotebookParameterError(f"-p {key}: {notebook} declares it, but s2ilib.study.notebook_params."
                                     "PARAMETERS gives it no type; it cannot be checked, so it is refused")
    if spec.kind == "count":
        if isinstance(value, bool) or not isinstance(value, int):
            raise NotebookParameterError(f"-p {key}: expected an integer ({spec.why}), got "
                                         f"{type(value).__name__} {value!r}")
        if not spec.range.contains(value):
            raise NotebookParameterError(f"-p {key} = {value!r} is out of range: must be "
                                         f"{spec.range.describe()} ({spec.why})")
    elif spec.kind == "names":
        allowed = spec.allowed(notebook, study.cfg)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise NotebookParameterError(f"-p {key}: expected a list of names ({spec.why}), got "
                                         f"{type(value).__name__} {value!r}; e.g. -p '{key}=[\"{allowed[0]}\"]'")
        if not value and not spec.empty_ok:
            raise NotebookParameterError(f"-p {key}: the list is empty; name at least one of {', '.join(allowed)}")
        bad = [v for v in value if v not in allowed]
        if bad or len(set(value)) != len(value):
            problem = f"unknown {bad}" if bad else "a name is listed twice"
            raise NotebookParameterError(f"-p {key} = {value!r}: {problem} for {notebook}; choose from "
                                         f"{', '.join(allowed)}")
        if key == "methods" and notebook.startswith("07"):
            _interpolation_methods(value)
    else:
        if not isinstance(value, dict):
            raise NotebookParameterError(f"-p {key}: expected a mapping ({spec.why}), got {type(value).__name__} "
                                         f"{value!r}; e.g. -p '{key}={{}}'")
        spec.check(value, study)


def _interpolation_methods(value: list[str]) -> None:
    from s2ilib.core import registry

    kinds = [registry.method(m).query for m in value]
    if len(value) != 2 or kinds[0] == "text" or kinds[1] != "text":
        raise NotebookParameterError(f"-p methods = {value!r}: notebook 07 interpolates a speech method, then the "
                                     "text upper bound (two names, e.g. [\"one_stage\", \"text\"])")
