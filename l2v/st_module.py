"""Where export folders written before the layout of l2v 0.1 name sentence-transformers' module
(modules.json: "l2v.st_module.L2VModule"); the module itself is formats/st_module.py."""

from .formats.st_module import L2VModule

__all__ = ["L2VModule"]
