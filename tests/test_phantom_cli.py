"""The phantom's command line: option errors, light start-up, reproducibility, BIDS validity.

Runs ``bids_perfusion.cli.phantom.main(argv)`` in-process (argparse errors raise
SystemExit with status 2) and, where the behaviour of a fresh interpreter matters, a
subprocess. Datasets use the small grid of :data:`helpers.SMALL` and one subject. Start-up
times are figures of ``benchmarks/bench_startup.py``, not assertions.
"""

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL, load, require

from bids_perfusion.cli.phantom import main
from bids_perfusion.phantom.bids import TRUTH

#: Options that put one subject on the small grid, quietly.
SMALL_ARGS = ["-q", "--matrix", *map(str, SMALL["matrix"]), "--fov", str(SMALL["fov_mm"]),
              "--slab", str(SMALL["slab_mm"]), "--grades", "HGG"]
#: Every optional branch of the writer at once: two doses, two echoes, preload, gamma
#: residue, quadratic blood relaxivity, multi-TI PASL with included M0, 2-D readout and
#: background suppression.
VARIANT_ARGS = ["--doses", "1", "0.5", "--te", "0.02", "0.04", "--preload", "--residue",
                "gamma", "--blood-relaxivity", "quadratic", "--asl-type", "PASL", "--plds",
                "1.5", "2.0", "--n-pairs", "2", "3", "--m0-type", "Included", "--asl-readout",
                "2D", "--background-suppression"]


def _executable(name):
    """A console script installed beside the running interpreter, or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _files(root):
    """Every file under ``root`` as {relative path: bytes}."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _run_main(argv):
    """Run the CLI in-process; returns the exit status."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Datasets 'a' and 'b' with seed 7, 'c' with seed 8 and 'variant' with seed 7.

    'a' is written into a folder that exists and is empty, which is allowed.
    """
    root = tmp_path_factory.mktemp("cli")
    (root / "a").mkdir()
    for name, seed, extra in (("a", 7, []), ("b", 7, []), ("c", 8, []),
                              ("variant", 7, VARIANT_ARGS)):
        assert _run_main([root / name, *SMALL_ARGS, "--seed", seed, *extra]) == 0
    return root


# --- bad options: exit status 2, a message naming the option, nothing written -------------

BAD_OPTIONS = {
    "negative DSC SNR": (["--snr", "-5"], ["'dsc.snr'", "-5"]),
    "negative ASL SNR": (["--asl-snr", "-1"], ["'asl.snr'", "-1"]),
    "unknown grade": (["--grades", "HGG", "GBM"], ["'grades'", "'GBM'", "LGG"]),
    "PLDs vs pairs": (["--plds", "1.5", "2.0", "2.5", "--n-pairs", "4", "4"],
                      ["'asl.n_pairs'", "3 delays", "2 pair counts"]),
    "no subjects": (["--n-subjects", "0"], ["n_subjects", "at least 1"]),
    "TE in ms": (["--te", "30"], ["'dsc.echo_times'", "seconds"]),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
@pytest.mark.parametrize("parent_exists", [True, False], ids=["parent", "no-parent"])
def test_bad_option_exits_2_names_it_and_writes_nothing(case, parent_exists, tmp_path,
                                                        capsys):
    argv, fragments = BAD_OPTIONS[case]
    parent = tmp_path / "parent"
    if parent_exists:
        parent.mkdir()
    assert _run_main([parent / "bids", *argv]) == 2
    message = capsys.readouterr().err.splitlines()[-1]
    assert message.startswith("bids-perfusion-phantom: error: ")
    for fragment in fragments:
        assert fragment in message
    # Nothing written: not OUT_DIR, not a staging folder, not even a missing parent.
    assert sorted(p.name for p in tmp_path.iterdir()) == (["parent"] if parent_exists else [])
    if parent_exists:
        assert list(parent.iterdir()) == []


def test_failure_during_simulation_leaves_no_staging_folder(tmp_path, capsys):
    """A 10 mm field of view cannot hold a tumour: the error comes after staging began."""
    assert _run_main([tmp_path / "bids", *SMALL_ARGS, "--fov", "10", "--slab", "10"]) == 2
    assert "too small to hold a tumour" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_console_script_exit_status_in_a_fresh_process(tmp_path):
    script = _executable("bids-perfusion-phantom")
    command = [script] if script else [sys.executable, "-m", "bids_perfusion.cli.phantom"]
    result = subprocess.run([*command, str(tmp_path / "bids"), "--snr", "-5"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "'dsc.snr'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_dir_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "bids"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert _run_main([out, *SMALL_ARGS, "--no-dsc"]) == 2
    message = capsys.readouterr().err
    assert str(out) in message and "--overwrite" in message
    assert [p.name for p in tmp_path.iterdir()] == ["bids"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    assert _run_main([out, *SMALL_ARGS, "--no-dsc", "--overwrite"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["bids"]  # no staging folder left
    assert not (out / "keep.txt").exists()
    assert (out / "sub-01" / "perf" / "sub-01_asl.nii.gz").is_file()
    assert not list((out / "sub-01" / "perf").glob("*_dsc.*"))


def test_out_dir_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "bids"
    out.write_text("not a folder")
    assert _run_main([out, "--snr", "20"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "not a folder"
    assert [p.name for p in tmp_path.iterdir()] == ["bids"]


# --- start-up ----------------------------------------------------------------------------

def test_cli_module_and_parser_import_no_heavy_packages():
    """Importing the CLI and building its parser loads no numpy, nibabel, scipy or torch
    (start-up times: ``benchmarks/bench_startup.py``)."""
    code = ("import sys; import bids_perfusion.cli.phantom as m; m.build_parser();"
            " print(' '.join(sorted(n for n in ('numpy', 'scipy', 'nibabel', 'nilearn',"
            " 'nipype', 'torch') if n in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == ""


def test_help_is_complete():
    result = subprocess.run([sys.executable, "-m", "bids_perfusion.cli.phantom", "--help"],
                            capture_output=True, text=True, check=True, timeout=60)
    for flag in ("--snr", "--grades", "--plds", "--n-pairs", "--overwrite", "--seed"):
        assert flag in result.stdout
    assert "(default: 50.0)" in result.stdout  # defaults are read from the configuration


# --- reproducibility ---------------------------------------------------------------------

def test_same_seed_gives_byte_identical_files(datasets):
    first, second = _files(datasets / "a"), _files(datasets / "b")
    assert sorted(first) == sorted(second)
    assert sum(name.endswith(".nii.gz") for name in first) >= 30
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_gzip_headers_hold_no_timestamp(datasets):
    """Byte identity must not depend on the clock: every gzip member has MTIME 0."""
    for name, content in _files(datasets / "a").items():
        if name.endswith(".gz"):
            assert content[:3] == b"\x1f\x8b\x08", name
            assert int.from_bytes(content[4:8], "little") == 0, name
            gzip.decompress(content)  # and the file is a complete gzip stream


def test_different_seeds_give_different_subjects(datasets):
    first, other = _files(datasets / "a"), _files(datasets / "c")
    assert sorted(first) == sorted(other)  # same acquisition, same files
    for name in ("participants.tsv", "sub-01/perf/sub-01_ce-gadolinium_dsc.nii.gz",
                 "sub-01/perf/sub-01_asl.nii.gz"):
        assert first[name] != other[name], name
    truth = f"{TRUTH.as_posix()}/sub-01/perf/sub-01_desc-truth_cbf.nii.gz"
    cbf_a, cbf_c = load(datasets / "a" / truth), load(datasets / "c" / truth)
    assert np.mean(np.abs(cbf_a - cbf_c)) > 1.0  # mL/100 g/min: other anatomy and tumour


# --- BIDS validity -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "variant"])
def test_raw_dataset_passes_bids_validator(datasets, name):
    validator = _executable("bids-validator-deno")
    require(validator is not None, "bids-validator-deno is not installed (pip install "
            "bids-validator-deno, part of the 'test' extra)")
    result = subprocess.run([validator, str(datasets / name), "--format", "json"],
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    errors = [issue for issue in report["issues"]["issues"] if issue["severity"] == "error"]
    assert errors == [], json.dumps(errors, indent=1)[:4000]
    assert result.returncode == 0
    assert report["summary"]["subjects"] == ["01"]
    assert set(report["summary"]["dataTypes"]) == {"anat", "perf"}


def test_leakage_model_option():
    """--leakage chooses the phantom's leakage model (issue 12, item 2); bsw by default."""
    from bids_perfusion.cli.phantom import build_parser, config_from_args

    parser = build_parser()
    for extra, model in (([], "bsw"), (["--leakage", "t2star"], "t2star"),
                         (["--leakage", "tofts"], "tofts")):
        assert config_from_args(parser.parse_args(["/tmp/out", *extra])).dsc.leakage == model
    with pytest.raises(SystemExit):
        parser.parse_args(["/tmp/out", "--leakage", "patlak"])


def test_dataset_folder_has_the_permissions_of_the_umask(datasets):
    """Not the 0700 of a temporary folder: other users (a container's) can read it."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert (datasets / "b").stat().st_mode & 0o777 == 0o777 & ~umask
