"""Where a study's outputs go: one run folder per preset, one variant folder per stage and method.

``RunPaths.create(run_root, report_dir, cfg)`` knows the run's configuration, so every stage
folder it returns is the variant folder of that configuration (:mod:`s2ilib.core.variants`):
``runs/<preset>/encoders/<dataset>/<kind>`` for the preset's own configuration and
``.../<kind>@<variant>`` when config keys that matter to the stage are overridden
(``s2i study --set gan.steps=3000``). A method's registry ``overrides`` are applied on top of the
run's configuration for its own encoder and generator folders (:meth:`RunPaths.config_for`).
Each stage writes ``variant.json`` (the variant's resolved configuration) beside its outputs, and
every results entry carries the variant of its numbers (:func:`provenance`). The results file is
shared (``<report>/results.json``); a variant's tables, figures and executed notebooks go to
``<report>/variants/<variant>/`` (:attr:`RunPaths.outputs`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2ilib.core import registry
from s2ilib.core.config import StudyConfig, get_config
from s2ilib.core.device import resolve_device
from s2ilib.core.io import atomic_write_text
from s2ilib.core.variants import STAGE_SECTIONS, config_diff, flatten, variant_dir, variant_name

VARIANT_FILE = "variant.json"


def with_overrides(cfg: StudyConfig, overrides: dict[str, Any] | None) -> StudyConfig:
    """``cfg`` with dotted ``overrides`` on top (validated by :func:`get_config`); ``cfg`` if none."""
    if not overrides:
        return cfg
    base = flatten(dataclasses.asdict(get_config(cfg.preset)))
    mine = {k: v for k, v in flatten(dataclasses.asdict(cfg)).items() if k != "preset" and base.get(k) != v}
    return get_config(cfg.preset, {**mine, **overrides})


def device_of(cfg: StudyConfig) -> str:
    """The torch device the config's ``device`` key names here (``auto`` resolved), as a string."""
    return str(resolve_device(cfg.device))


@dataclass(frozen=True)
class RunPaths:
    """Folders of one run (``runs/<preset>/``) and its report (``reports/<preset>/``).

    ``cfg``: the run's configuration (None: the preset's own, no variant folders).
    """

    run: Path
    report: Path
    cfg: StudyConfig | None = None

    @classmethod
    def create(cls, run_root: str | Path, report_dir: str | Path, cfg: StudyConfig | str) -> "RunPaths":
        """``cfg``: the run's StudyConfig (a preset name means that preset's own configuration)."""
        if isinstance(cfg, str):
            cfg = get_config(cfg)
        paths = cls(Path(run_root).resolve() / cfg.preset, Path(report_dir).resolve(), cfg)
        for p in (paths.run, paths.report, paths.figures):
            p.mkdir(parents=True, exist_ok=True)
        return paths

    @property
    def outputs(self) -> Path:
        """Where this run's tables and figures go: the report folder for the preset's own
        configuration, ``<report>/variants/<variant>/`` for overrides (never the baseline's files)."""
        return self.report / report_subdir(self.cfg)

    @property
    def figures(self) -> Path:
        return self.outputs / "figures"

    @property
    def results(self) -> Path:
        return self.report / "results.json"

    def config_for(self, method: str | None = None) -> StudyConfig | None:
        """The run's config with ``method``'s registry overrides on top (the run's own if none)."""
        if method is None or method not in registry.METHODS or self.cfg is None:
            return self.cfg
        return with_overrides(self.cfg, registry.method(method).overrides)

    def _folder(self, parent: Path, name: str, stage: str, cfg: StudyConfig | None) -> Path:
        return parent / name if cfg is None else variant_dir(parent, name, cfg, stage)

    def data(self, dataset: str) -> Path:
        return self._folder(self.run / "data", dataset, "data", self.cfg)

    def encoder(self, dataset: str, encoder: str, method: str | None = None) -> Path:
        """Folder of encoder ``encoder``; with ``method``, the variant its registry overrides make."""
        return self._folder(self.run / "encoders" / dataset, encoder, "encoder", self.config_for(method))

    def gan(self, dataset: str, method: str) -> Path:
        """Folder of the generator ``method`` (a method that trains its own generator)."""
        return self._folder(self.run / "gan" / dataset, method, "gan", self.config_for(method))

    def eval(self, dataset: str) -> Path:
        return self._folder(self.run / "eval", dataset, "eval", self.cfg)


def report_subdir(cfg: StudyConfig | None) -> str:
    """``""`` for the preset's configuration, else ``variants/<variant>`` (every key counts)."""
    v = variant_of(cfg, "eval")
    return f"variants/{v}" if v else ""


def variant_of(cfg: StudyConfig | None, stage: str) -> str:
    """The variant name of ``cfg`` for ``stage`` (``""``: the preset's own configuration)."""
    return "" if cfg is None else variant_name(cfg, stage)


def write_variant_config(folder: str | Path, cfg: StudyConfig, stage: str, **extra: Any) -> Path:
    """Write ``variant.json`` into a stage folder: stage, variant, its overrides and the full config."""
    path = Path(folder) / VARIANT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"stage": stage, "variant": variant_name(cfg, stage), "overrides": config_diff(cfg, stage),
            **extra, "config": cfg.to_dict()}
    atomic_write_text(path, json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    return path


def _stage_of(cfg: StudyConfig, section: Any) -> str:
    for stage in STAGE_SECTIONS:
        if getattr(cfg, stage, None) is section:
            return stage
    return "eval"


def provenance(cfg: StudyConfig, section: Any = None, stage: str | None = None) -> dict[str, Any]:
    """What every results entry carries: preset, seed, variant and the config section it came from.

    ``stage`` (data | encoder | gan | eval) names the variant; by default the stage whose
    section ``section`` is (``cfg.gan`` -> ``gan``), else ``eval`` (every key counts).
    """
    stage = stage or (_stage_of(cfg, section) if section is not None else "eval")
    out: dict[str, Any] = {"preset": cfg.preset, "seed": cfg.seed, "variant": variant_name(cfg, stage)}
    if section is not None:
        out["config"] = dataclasses.asdict(section)
    return out


def entry_name(folder: Path) -> str:
    """A results key for a stage folder: the folder's name (``one_stage``, ``one_stage@gan.steps=8``),
    so a variant's numbers sit beside the baseline's instead of replacing them."""
    return Path(folder).name
