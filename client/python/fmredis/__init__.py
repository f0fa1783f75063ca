from .client import *  # noqa: F401,F403
