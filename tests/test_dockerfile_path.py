"""The Dockerfile path for hosts that reach an image registry (Docker Desktop), as far as
this machine allows: no registry is reachable here, so the build itself cannot run.

What can be checked: the Dockerfile installs what the offline build installs (so both
images behave alike, as the README says), and `llmscript sandbox build --dockerfile`
on a host without a registry fails in one line that names the offline build.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._sandbox import image

DOCKERFILE = Path(image.__file__).with_name("Dockerfile")


def test_the_dockerfile_installs_what_the_offline_build_installs() -> None:
    text = DOCKERFILE.read_text()
    install = re.search(r"apt-get install[^\n]*\\\n(.*?)\\?\n", text, flags=re.S)
    assert install is not None
    assert sorted(install.group(1).split()) == sorted(image.PACKAGES)
    assert "USER 65534:65534" in text and "WORKDIR /work" in text  # the offline image's user


@pytest.mark.docker
def test_without_a_registry_the_dockerfile_build_says_to_build_offline(
        docker_client: Any) -> None:
    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "sandbox",
                           "build", "--dockerfile", "--image", "llmscript-sandbox:no-registry"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:  # pragma: no cover (a machine that reaches a registry)
        docker_client.images.remove("llmscript-sandbox:no-registry")
        pytest.skip("this machine reaches an image registry: the build ran")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].endswith("build offline with `llmscript sandbox build`.")
