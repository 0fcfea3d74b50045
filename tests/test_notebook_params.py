"""Every parameter a study notebook declares has a declared type and range (issue 30): the runner
checks `s2i study -p key=value` against them before papermill starts (s2ilib.study.notebook_params)."""
from __future__ import annotations

import pytest

from s2ilib.core.config import get_config
from s2ilib.study.notebook_params import PARAMETERS, NotebookParameterError, Study, check_parameter
from s2ilib.study.runner import COMMON_PARAMETERS, declared_parameters, study_notebooks


def _declared() -> dict[str, dict]:
    return {nb.stem: declared_parameters(nb) for nb in study_notebooks()}


def test_every_notebook_parameter_has_a_declared_type():
    declared = _declared()
    assert "03_gan_training" in declared and "n_noise" in declared["03_gan_training"]
    own = {(nb, k) for nb, params in declared.items() for k in params if k not in COMMON_PARAMETERS}
    missing = sorted(f"{nb}: {k}" for nb, k in own if k not in PARAMETERS)
    assert not missing, f"notebook parameters without a declared type in notebook_params.PARAMETERS: {missing}"
    unused = sorted(set(PARAMETERS) - {k for _, k in own})
    assert not unused, f"PARAMETERS declares parameters no notebook has: {unused}"


def test_every_notebook_default_passes_its_own_check():
    """The defaults written in the notebooks' parameters cells lie inside the declared types and ranges."""
    import ast

    study = Study("smoke", 1234, {}, get_config("smoke"))
    for nb, params in _declared().items():
        for key, info in params.items():
            if key in COMMON_PARAMETERS:
                continue
            check_parameter(nb, key, ast.literal_eval(info["default"]), study)


def test_a_parameter_without_a_declared_type_is_refused():
    study = Study("smoke", 1234, {}, get_config("smoke"))
    with pytest.raises(NotebookParameterError, match="-p n_birds: .* gives it no type"):
        check_parameter("01_data_synthesis", "n_birds", 3, study)


def test_count_parameters_name_their_range():
    study = Study("smoke", 1234, {}, get_config("smoke"))
    with pytest.raises(NotebookParameterError) as info:
        check_parameter("03_gan_training", "n_noise", 10**30, study)
    assert str(info.value).startswith("-p n_noise = 1000000000000000000000000000000 is out of range: must be in [1, 64]")
    with pytest.raises(NotebookParameterError, match="expected an integer"):
        check_parameter("03_gan_training", "n_noise", True, study)
