"""nasdeploy: FairNAS / SCARLET-NAS from supernet to deployed engine."""
from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging  # noqa: E402

# PyTorch's C++-extension module warns "No CUDA runtime is found" when it is imported (by a runtime's quantizer or
# compiler) on a machine with a CUDA toolkit and no GPU: true, and nothing a CPU run needs to hear
_logging.getLogger("torch.utils.cpp_extension").setLevel(_logging.ERROR)

from .errors import NasDeployError  # noqa: E402
from .nas.space import Arch, SearchSpace, get_space  # noqa: E402
from .zoo import create_model, list_models, model_info  # noqa: E402

__all__ = ["Arch", "NasDeployError", "SearchSpace", "create_model", "get_space", "list_models", "model_info",
           "__version__"]
