"""Kept only so ``python tests/standins.py anthropic ...`` still starts a stand-in.

The stand-ins are the package ``tests/standins/`` (``python tests/standins ...``);
``import standins`` finds the package, never this file. Delete this file once
``tests/test_providers.py`` and ``tests/browser_helpers.py`` call ``tests/standins``.
"""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_suffix("")), run_name="__main__")
