"""Run the study's notebooks headlessly with papermill, in order, into ``reports/<preset>/``.

Every study notebook (``NN_name.ipynb`` with NN >= 01; ``00_template.ipynb`` is not run)
declares the common parameters ``preset``, ``seed``, ``run_root``, ``report_dir`` and
``overrides`` (config overrides as dotted keys, ``s2i study --set gan.steps=3000``) in its cell
tagged ``parameters``. Extra parameters are passed to the notebooks that declare them; a
parameter no selected notebook declares is refused, and every value is checked against its declared
type and range (:mod:`s2ilib.study.notebook_params`) before any folder is made or any notebook starts.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable

from s2ilib.core.config import PRESETS, ConfigError, get_config
from s2ilib.core.errors import UsageError
from s2ilib.core.results import environment_info, git_commit, machine_info, now, record
from s2ilib.core.runkit import writer
from s2ilib.study.paths import report_subdir

REPO_ROOT = Path(__file__).resolve().parents[2]  # s2ilib/study/runner.py -> the repository
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
COMMON_PARAMETERS = ("preset", "seed", "run_root", "report_dir", "overrides")
# The kernel's environment: headless plotting, and progress bars that update every 10 s so the
# executed notebooks in reports/ do not fill with thousands of progress lines.
_KERNEL_ENV = {"MPLBACKEND": "agg", "TQDM_MININTERVAL": "10"}


class StudyError(RuntimeError):
    """A notebook failed, or parameters do not fit the notebooks."""


class StudyUsageError(StudyError, UsageError):
    """A bad argument of ``s2i study`` (an unknown notebook or parameter): a usage error, exit 2."""


def _stamp_old_machines(results: Path) -> None:
    """Notebooks recorded before each kept its machine ran on the machine of the study record they
    were made under; write it into them before a new study record replaces it."""
    from s2ilib.core.results import load_results

    data = load_results(results) if results.is_file() else {}
    cpu = ((data.get("study") or {}).get("environment") or {}).get("cpu")
    old = {k: {"machine": {"cpu": cpu, "inferred_from": "the study record"}}
           for k, v in (data.get("notebooks") or {}).items() if isinstance(v, dict) and "machine" not in v}
    if cpu and old:
        record(results, "notebooks", old, preset=data.get("preset"))


def study_notebooks(notebook_dir: Path = NOTEBOOK_DIR, only: Iterable[str] | None = None) -> list[Path]:
    """Notebooks ``NN_name.ipynb`` with NN >= 01 in order (``00_template`` is not a step of the
    study); ``only`` selects by number prefix or stem."""
    books = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb") if p.name[:2] != "00")
    if not books:
        raise StudyError(f"no notebooks NN_*.ipynb in {notebook_dir}")
    if only:
        wanted = set(only)
        books = [p for p in books if p.stem in wanted or p.stem[:2] in wanted]
        missing = wanted - {p.stem for p in books} - {p.stem[:2] for p in books}
        if missing:
            names = ", ".join(p.stem for p in study_notebooks(notebook_dir))
            raise StudyUsageError(f"--only: no such notebook(s) {sorted(missing)}; the study's notebooks: {names}")
    return books


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Parameters declared in the notebook's ``parameters`` cell (papermill.inspect_notebook)."""
    import warnings

    import papermill as pm
    from nbformat.warnings import MissingIDFieldWarning

    with warnings.catch_warnings():  # the committed notebooks' cells have no ids; papermill adds them on execution
        warnings.simplefilter("ignore", MissingIDFieldWarning)
        params = pm.inspect_notebook(str(notebook))
    if not params:
        raise StudyError(f"{notebook.name}: no cell tagged 'parameters'")
    return params


def run_notebook(notebook: Path, output: Path, parameters: dict[str, Any], timeout: int | None = None,
                 progress: bool = True) -> float:
    """Execute one notebook with papermill; refuse undeclared parameters. Returns seconds."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    declared = declared_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise StudyUsageError(f"{notebook.name} does not declare parameter(s) {unknown}; "
                              f"it declares {sorted(declared)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    env_backup = {k: os.environ.get(k) for k in _KERNEL_ENV}
    os.environ.update(_KERNEL_ENV)
    t0 = time.time()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(notebook.parent),
                            kernel_name="python3", progress_bar=progress, execution_timeout=timeout,
                            log_output=False, request_save_on_cell_execute=True)
    except PapermillExecutionError as exc:
        raise StudyError(f"{notebook.name} failed in cell {exc.cell_index} "
                         f"(execution count {exc.exec_count}): {exc.ename}: {exc.evalue}\n"
                         f"executed copy with the traceback: {output}") from exc
    finally:
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return time.time() - t0


def run_study(preset: str = "small", seed: int = 1234, run_root: str | Path | None = None,
              report_root: str | Path | None = None, parameters: dict[str, Any] | None = None,
              only: Iterable[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR,
              timeout: int | None = None, progress: bool = True,
              overrides: dict[str, Any] | None = None) -> Path:
    """Run the notebooks in order at ``preset``; returns the report folder.

    ``overrides``: config keys (dotted, ``{"gan.steps": 3000}``) passed to every notebook, which
    resolves its config as ``get_config(preset, {"seed": seed, **overrides})``; each stage then
    writes into its variant folder (``gan/<dataset>/one_stage@gan.steps=3000``) beside the
    preset's. Validated before any notebook runs (:class:`s2ilib.core.config.ConfigError`).

    Executed notebooks go to ``<report_root>/<preset>/``; the results file is
    ``<report_root>/<preset>/results.json``; data, checkpoints and caches go to
    ``<run_root>/<preset>/`` (default ``runs/``). One study per run folder: the call holds
    ``<run_root>/<preset>/.lock`` (:class:`s2ilib.core.runkit.RunLock`), so a second study on the same
    run folder fails at once with :class:`s2ilib.core.runkit.RunLockedError` naming the holder's pid.
    """
    if preset not in PRESETS:
        raise StudyUsageError(f"--preset {preset!r}: unknown preset; choose one of {sorted(PRESETS)}")
    overrides = check_overrides(preset, seed, overrides)
    parameters = dict(parameters or {})
    books, declared = check_study_arguments(preset, seed, overrides, parameters, only, notebook_dir)
    run_root = Path(run_root or REPO_ROOT / "runs").resolve()
    with writer(run_root / preset):  # one study per run folder; temp files of killed writes removed
        return _run_study_locked(preset, seed, run_root, report_root, parameters, books, declared, timeout,
                                 progress, overrides)


def check_study_arguments(preset: str, seed: int, overrides: dict[str, Any], parameters: dict[str, Any],
                          only: Iterable[str] | None, notebook_dir: Path = NOTEBOOK_DIR):
    """The selected notebooks and their declared parameters, once every argument is checked: a bad
    ``--only``, a parameter no selected notebook declares or a value of the wrong type or range is a
    :class:`StudyUsageError` / :class:`s2ilib.study.notebook_params.NotebookParameterError` (exit 2)
    raised before anything is written."""
    from s2ilib.study.notebook_params import Study, check_parameter

    clash = sorted(set(parameters) & set(COMMON_PARAMETERS))
    if clash:
        raise StudyUsageError(f"-p {', '.join(clash)}: pass {clash} through their own options "
                              "(--preset, --seed, --run-root, --report-root, --set), not as extra parameters")
    books = study_notebooks(notebook_dir, only)
    declared = {nb: declared_parameters(nb) for nb in books}
    for nb, params in declared.items():
        missing = [p for p in COMMON_PARAMETERS if p not in params]
        if missing:
            raise StudyError(f"{nb.name} does not declare the common parameter(s) {missing}")
    unused = sorted(k for k in parameters if not any(k in p for p in declared.values()))
    if unused:
        raise StudyUsageError(f"-p {', '.join(unused)}: no selected notebook declares parameter(s) {unused} "
                              f"(config keys go through --set)")
    study = Study(preset, seed, overrides, get_config(preset, {"seed": seed, **overrides}))
    for nb in books:
        for key, value in parameters.items():
            if key in declared[nb]:
                check_parameter(nb.stem, key, value, study)
    return books, declared


def check_overrides(preset: str, seed: int, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Config overrides as the notebooks will apply them; a bad key or value is a ConfigError now,
    not a failure in the first notebook. ``preset`` and ``seed`` have their own options."""
    overrides = dict(overrides or {})
    own = sorted(set(overrides) & {"preset", "seed"})
    if own:
        raise ConfigError(f"{own}: pass the preset and seed through --preset / --seed, not --set")
    get_config(preset, {"seed": seed, **overrides})
    return overrides


def _run_study_locked(preset: str, seed: int, run_root: Path, report_root: str | Path | None,
                      parameters: dict[str, Any], books: list[Path], declared: dict[Path, dict],
                      timeout: int | None, progress: bool, overrides: dict[str, Any]) -> Path:
    report_dir = Path(report_root or REPO_ROOT / "reports").resolve() / preset

    results = report_dir / "results.json"
    # overrides as "key=value" strings: results.record merges dicts, and a list replaces the last study's
    shown = [f"{k}={v}" for k, v in sorted(overrides.items())]
    _stamp_old_machines(results)
    record(results, "study", {"preset": preset, "seed": seed, "overrides": shown, "run_root": str(run_root),
                              "started": now(), "environment": environment_info()}, preset=preset)
    common = {"preset": preset, "seed": seed, "run_root": str(run_root), "report_dir": str(report_dir),
              "overrides": overrides}
    # a variant's executed notebooks go beside its tables and figures, not over the baseline's
    executed = report_dir / report_subdir(get_config(preset, {"seed": seed, **overrides}))
    for nb in books:
        params = {**common, **{k: v for k, v in parameters.items() if k in declared[nb]}}
        logged = {**params, "overrides": shown}
        print(f"[s2i study] {nb.name} (preset {preset})", flush=True)
        try:
            seconds = run_notebook(nb, executed / nb.name, params, timeout=timeout, progress=progress)
        except StudyError:
            record(results, "notebooks", {nb.stem: {"status": "failed", "finished": now(),
                                                    "parameters": logged}})
            raise
        record(results, "notebooks", {nb.stem: {"status": "ok", "seconds": round(seconds, 1),
                                                "finished": now(), "parameters": logged, **git_commit(),
                                                "machine": machine_info()}})
        print(f"[s2i study] {nb.name} done in {seconds:.0f} s", flush=True)
    return report_dir
