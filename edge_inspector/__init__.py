"""edge-inspector: a visual inspection station daemon for an edge box with a GPU."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
