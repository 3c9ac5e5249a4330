"""The gradient-flow picture of a live step: what one training step did to every parameter tensor.

view.py builds the view model from the worker's per-tensor table (flags, module tree, log-scale bars,
summary line); layout.py places it on a canvas; svg.py, png.py and html.py write it out. No torch
here: the CLI and the language server import this package, the worker never does.
"""
from gradpath.live.report.view import FLAGS, choose_table, flow_view  # noqa: F401
