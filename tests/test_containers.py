"""The container files: Dockerfile, its entry point, the Apptainer definition file.

No container engine runs here (``make test-container`` builds and runs the image where
podman is installable); these tests check what users rely on in the files themselves.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from helpers import require_package

from bids_perfusion import __version__
from bids_perfusion.derivatives import container_type

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "containers" / "entrypoint.sh"


def _instructions():
    """``[(INSTRUCTION, arguments)]`` of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def _args():
    return dict(a.split("=", 1) if "=" in a else (a, None) for i, a in _instructions()
                if i == "ARG")


def test_dockerfile_defaults_to_the_public_base_and_the_cuda_wheel():
    instructions = _instructions()
    args = _args()
    assert instructions[0] == ("ARG", "BASE=python:3.11-slim-bookworm")
    assert [a for i, a in instructions if i == "FROM"] == ["${BASE}"]
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX"])
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                if "==" in line)
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["VERSION"] == __version__


def test_dockerfile_installs_with_constraints_the_validator_and_runs_as_a_user():
    instructions = _instructions()
    installs = [a for i, a in instructions if i == "RUN" and "pip install" in a]
    assert installs and all("pip install -c constraints.txt" in a for a in installs)
    assert any("bids-validator-deno" in a for a in installs)
    assert "bids-validator-deno" in (ROOT / "constraints.txt").read_text()
    users = [a for i, a in instructions if i == "USER"]
    assert users == ["bidsapp"]
    environment = " ".join(a for i, a in instructions if i == "ENV")
    assert "BIDS_PERFUSION_CONTAINER=docker" in environment
    assert "NIPYPE_NO_ET=1" in environment
    assert [a for i, a in instructions if i == "ENTRYPOINT"] == [
        '["/usr/local/bin/bids-perfusion-entrypoint"]']
    labels = " ".join(a for i, a in instructions if i == "LABEL")
    for key in ("title", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")}
    copied = [word for i, a in _instructions() if i == "COPY" for word in a.split()[:-1]]
    assert "containers/entrypoint.sh" in copied and "constraints.txt" in copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored and source.split("/")[0] not in ignored
    # package data: the bundled weights travel with `pip install .` (MANIFEST.in)
    assert "bids_perfusion/data" in (ROOT / "MANIFEST.in").read_text()
    assert os.access(ENTRYPOINT, os.X_OK)


def _entrypoint(tmp_path, home):
    """Run the entry point with a stand-in App that prints the variables it sees."""
    stub = tmp_path / "bin" / "bids-perfusion"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "$HOME|$XDG_CACHE_HOME|$MPLCONFIGDIR|$DENO_DIR|$*"\n')
    stub.chmod(0o755)
    environ = {"PATH": f"{stub.parent}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    if home is not None:
        environ["HOME"] = str(home)
    result = subprocess.run(["/bin/sh", str(ENTRYPOINT), "/data", "/out", "participant"],
                            env=environ, capture_output=True, text=True, check=True)
    return result.stdout.strip().split("|")


@pytest.mark.parametrize("home", [None, "/nonexistent", "/"])
def test_entrypoint_makes_a_writable_home_when_it_has_none(tmp_path, home):
    home_seen, cache, matplotlib, deno, arguments = _entrypoint(tmp_path, home)
    assert Path(home_seen).parent == tmp_path
    assert Path(home_seen).name.startswith("bids-perfusion-home.")
    assert cache == f"{home_seen}/.cache" and Path(cache).is_dir()
    assert Path(matplotlib).is_dir() and Path(deno).is_dir()
    assert arguments == "/data /out participant"


def test_entrypoint_keeps_a_writable_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home_seen, cache, matplotlib, deno, _ = _entrypoint(tmp_path, home)
    assert (home_seen, cache) == (str(home), str(home / ".cache"))
    assert (matplotlib, deno) == (str(home / ".cache/matplotlib"), str(home / ".cache/deno"))


def test_entrypoint_moves_the_caches_when_they_cannot_be_made_in_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache").write_text("a file where the cache folder should be")
    home_seen, cache, matplotlib, deno, _ = _entrypoint(tmp_path, home)
    assert home_seen == str(home)
    assert Path(cache).parent == tmp_path and Path(cache).name.startswith("bids-perfusion-cache.")
    assert (matplotlib, deno) == (f"{cache}/matplotlib", f"{cache}/deno")
    assert Path(matplotlib).is_dir() and Path(deno).is_dir()


def test_apptainer_definition_bootstraps_from_the_image_and_runs_its_entry_point():
    path = ROOT / "containers" / "bids-perfusion.def"
    header = [line for line in path.read_text().splitlines()
              if line.strip() and not line.startswith("#")][:2]
    assert header == ["Bootstrap: docker-archive", "From: bids-perfusion.tar"]
    parsers = require_package("spython.main.parse.parsers",
                              "pip install spython (the test extra)")
    stages = list(parsers.SingularityParser(str(path)).recipe.values())
    assert len(stages) == 1
    stage = stages[0]
    assert stage.fromHeader == "bids-perfusion.tar"
    assert shlex.split(stage.cmd) == ["exec", "/usr/local/bin/bids-perfusion-entrypoint", "$@"]
    assert "org.opencontainers.image.licenses Apache-2.0" in stage.labels
    assert any("bids-perfusion-entrypoint --version" in line for line in stage.install)


def test_apptainer_running_the_docker_image_is_recorded_as_apptainer():
    assert container_type({"BIDS_PERFUSION_CONTAINER": "docker"}) == "docker"
    assert container_type({"BIDS_PERFUSION_CONTAINER": "docker",
                           "APPTAINER_CONTAINER": "/x.sif"}) == "apptainer"
    assert container_type({"BIDS_PERFUSION_CONTAINER": "docker",
                           "SINGULARITY_CONTAINER": "/x.sif"}) == "singularity"
