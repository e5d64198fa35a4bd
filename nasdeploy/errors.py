"""One family of errors.  Messages say what was wrong and what to do; the CLI prints them on one line."""
from __future__ import annotations


class NasDeployError(Exception):
    """Base class: the CLI turns it into a one-line message and exit code 2."""


class ArchError(NasDeployError):
    """A malformed or disallowed architecture or search space."""


class ModelNotFoundError(NasDeployError):
    """A model name that is not in the zoo."""


class CheckpointError(NasDeployError):
    """A checkpoint that cannot be read or does not fit the model."""


class ArtifactError(NasDeployError):
    """A nasdeploy artefact (table, card, search state) that is corrupt, from another version or another space."""


class DataError(NasDeployError):
    """A missing, empty or malformed data folder."""


class DeviceError(NasDeployError):
    """A device or backend that is not available here (no CUDA, no TensorRT, ...)."""


class FoldError(NasDeployError):
    """A network that cannot be folded exactly."""


class UsageError(NasDeployError):
    """A bad command-line value (a latency target without units, a batch of 0, ...)."""


class ExportError(NasDeployError):
    """An export that failed or an artefact that does not match its PyTorch source."""
