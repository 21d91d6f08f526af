"""The ChatIR evaluation protocol: metrics from target ranks, fixed-dialog and live evaluation, reports.

Import the submodules directly (``evaluation.metrics``, ``.harness``, ``.report``); this package
imports nothing heavy so that ``chatir --help`` stays instant.
"""
