from . import controllers
from . import models
from . import report
from . import wizard
from .dispatch.watchdog import patch_prefork_server


def post_load():
    """Patch the server as the addon is imported (see dispatch/watchdog.py)."""
    patch_prefork_server()
