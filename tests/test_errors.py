"""One family of errors (nasdeploy/errors.py): every library error is a NasDeployError, and the command line turns
each into one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import pytest

from nasdeploy import errors

from .conftest import run_cli

FAMILY = [errors.ArchError, errors.ModelNotFoundError, errors.CheckpointError, errors.ArtifactError, errors.DataError,
          errors.DeviceError, errors.FoldError, errors.UsageError, errors.ExportError]


def test_the_family_is_every_error_class_of_the_module():
    declared = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)}
    assert declared == set(FAMILY) | {errors.NasDeployError}


@pytest.mark.parametrize("cls", FAMILY)
def test_each_error_is_one_line_with_exit_code_2(cls, monkeypatch):
    from nasdeploy import zoo

    def fails():
        raise cls("what was wrong, and what to do")

    monkeypatch.setattr(zoo, "list_models", fails)
    r = run_cli("zoo")
    assert issubclass(cls, errors.NasDeployError)
    assert r.returncode == 2 and r.stderr == "nasdeploy zoo: error: what was wrong, and what to do\n", r.stderr
