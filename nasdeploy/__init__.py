"""nasdeploy: FairNAS / SCARLET-NAS from supernet to deployed engine."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import NasDeployError  # noqa: E402
from .nas.space import Arch, SearchSpace, get_space  # noqa: E402
from .zoo import create_model, list_models, model_info  # noqa: E402

__all__ = ["Arch", "NasDeployError", "SearchSpace", "create_model", "get_space", "list_models", "model_info",
           "__version__"]
