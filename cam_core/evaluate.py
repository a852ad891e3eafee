"""Former home of the evaluation code, kept so old imports work: use :mod:`cam_core.evaluation`."""

from cam_core.evaluation import *  # noqa: F403
from cam_core.evaluation import __all__  # noqa: F401
