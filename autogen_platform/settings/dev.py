"""Development: the embedded defaults, debug on."""
from .base import *  # noqa: F401,F403
