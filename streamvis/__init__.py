"""streamvis: real-time video detection, tracking and segmentation streamer."""

from __future__ import annotations

from streamvis.errors import StreamvisError
from streamvis.frame import Frame, Result

__all__ = ["Frame", "Result", "StreamvisError", "__version__"]
__version__ = "0.1.0"
