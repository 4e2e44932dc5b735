"""Hostile and corrupted input to ``bids-perfusion``: refused before any processing.

Each case names what a user did and what must happen: a usage error (exit 2) before
anything is written, or a run skipped with a message naming the file, the field and the
fix while the other runs go on. The input dataset is never written. Most cases stop before
the workflow is built; they use the collection functions or ``main`` with a refusal.
"""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_perfusion import errors, guards
from bids_perfusion.cli.parser import build_parser
from bids_perfusion.cli.run import main
from bids_perfusion.collect import collect_asl_runs, collect_dsc_runs, layout_of, usable_weights
from bids_perfusion.crashes import input_error_of
from bids_perfusion.workflows.options import DSCOptions

DSC = "sub-{}/perf/sub-{}_ce-gadolinium_dsc"
FAST = ["--skip-bids-validation", "--nprocs", "1", "--no-leakage-correction"]


@pytest.fixture(scope="module")
def pristine(noisy):
    """The session's two-subject phantom (DSC and PCASL, tests/conftest.py); tests copy it
    before breaking it."""
    return noisy[0]


@pytest.fixture
def dataset(pristine, tmp_path):
    root = tmp_path / "bids"
    shutil.copytree(pristine, root)
    return root


def _snapshot(root):
    return {p: p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


def _dsc(root, subject="01", extension=".nii.gz"):
    return Path(root) / (DSC.format(subject, subject) + extension)


def _refused(argv, capsys):
    """main(argv) must stop with a usage error; returns its message."""
    with pytest.raises(SystemExit) as stopped:
        main([str(a) for a in argv])
    assert stopped.value.code == errors.EXIT_USAGE
    return capsys.readouterr().err


# --- The input is sacred ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["dotdot", "symlink", "derivatives inside a subject",
                                   "derivatives itself", "dataset root"])
def test_output_that_resolves_into_the_input_is_refused(dataset, tmp_path, capsys, where):
    before = _snapshot(dataset)
    link = tmp_path / "link"
    link.symlink_to(dataset)
    output = {"dotdot": tmp_path / "elsewhere" / ".." / "bids",
              "symlink": link,
              "derivatives inside a subject": dataset / "sub-01" / "derivatives" / "x",
              "derivatives itself": dataset / "derivatives",
              "dataset root": dataset}[where]
    message = _refused([dataset, output, "participant", *FAST, "-w", tmp_path / "w"], capsys)
    assert "inside the input dataset" in message
    assert _snapshot(dataset) == before
    assert not (tmp_path / "w").exists()


def test_output_under_derivatives_name_is_allowed():
    root = Path("/data/bids")
    assert guards.output_problem(root / "derivatives" / "perfusion", root) is None
    assert guards.inside_input(root / "derivatives" / ".." / "sub-01", root)


def test_default_work_dir_inside_the_dataset_is_refused(dataset, tmp_path, capsys,
                                                        monkeypatch):
    monkeypatch.chdir(dataset)  # the default -w is ./work
    before = _snapshot(dataset)
    message = _refused([dataset, tmp_path / "out", "participant", *FAST], capsys)
    assert "work directory" in message and "-w" in message
    assert _snapshot(dataset) == before and not (dataset / "work").exists()


def test_work_dir_through_dotdot_into_the_dataset_is_refused(dataset, tmp_path, capsys):
    work = tmp_path / "x" / ".." / "bids" / "sub-01" / "work"
    message = _refused([dataset, tmp_path / "out", "participant", *FAST, "-w", work], capsys)
    assert "inside the input" in message


def test_symlink_in_the_output_into_the_input_is_refused(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_description.json").symlink_to(dataset / "dataset_description.json")
    before = _snapshot(dataset)
    message = _refused([dataset, out, "participant", *FAST, "-w", tmp_path / "w"], capsys)
    assert "symbolic links" in message and "dataset_description.json" in message
    assert _snapshot(dataset) == before


def test_output_that_is_a_file_or_unwritable_is_refused(dataset, tmp_path, capsys,
                                                        monkeypatch):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert "is a file" in _refused([dataset, afile, "participant", *FAST], capsys)
    monkeypatch.setattr(guards.os, "access", lambda *args: False)
    assert "not writable" in _refused([dataset, tmp_path / "out", "participant", *FAST],
                                      capsys)


# --- Options ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", [["--nprocs", "-1"], ["--omp-nthreads", "-2"],
                                    ["--mem", "0"], ["--m0-scale", "-1"], ["--kh", "0"],
                                    ["--t1-blood", "nan"], ["--derivatives", "no/such"],
                                    ["--stunet-weights", "missing.safetensors"]])
def test_out_of_range_options_are_refused(dataset, tmp_path, capsys, option):
    message = _refused([dataset, tmp_path / "out", "participant", *FAST, *option], capsys)
    assert option[0] in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "expected"), [("{", "Expecting"),
                                                   ('["dsc"]', "JSON object"),
                                                   ('{"dsc": {"foo": 1}}', "'foo'")])
def test_bad_filter_file_is_refused(dataset, tmp_path, capsys, content, expected):
    filters = tmp_path / "filters.json"
    filters.write_text(content)
    message = _refused([dataset, tmp_path / "out", "participant", *FAST, "-w", tmp_path / "w",
                        "--bids-filter-file", filters], capsys)
    assert "--bids-filter-file" in message and expected in message


def test_relative_paths_are_resolved_when_parsed(tmp_path, monkeypatch):
    (tmp_path / "masks").mkdir()
    (tmp_path / "w.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["bids", "out", "participant", "--derivatives", "masks",
                                      "--phae-weights", "w.safetensors"])
    assert args.derivatives == [tmp_path / "masks"]
    assert args.phae_weights == tmp_path / "w.safetensors"


def test_an_empty_dataset_is_a_usage_error(tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    assert "no subject" in _refused([root, tmp_path / "out", "participant", *FAST], capsys)


def test_negative_bootstrap_count_is_refused(dataset, tmp_path, capsys):
    assert "--n-bootstrap" in _refused([dataset, tmp_path / "out", "group", "--n-bootstrap",
                                        "-5"], capsys)


# --- Sidecars and images: one bad run is skipped, the others go on ------------------------


def _sidecar(root, subject="01"):
    return _dsc(root, subject, ".json")


@pytest.mark.parametrize("content", ['{"EchoTime": 0.03,', "true", "[1, 2]", "\xff\xfe"])
def test_invalid_json_of_another_subject_does_not_stop_this_one(dataset, content):
    _sidecar(dataset, "02").write_bytes(content.encode("latin-1"))
    layout = layout_of(dataset)
    runs, problems = collect_dsc_runs(layout, ["01"])
    assert [run.subject for run in runs] == ["01"] and problems == []
    runs, problems = collect_dsc_runs(layout)
    assert [run.subject for run in runs] == ["01"]
    assert len(problems) == 1 and str(_sidecar(dataset, "02")) in problems[0]
    assert "Fix the JSON" in problems[0]


def test_invalid_inherited_sidecar_names_the_file_that_is_broken(dataset):
    top = dataset / "ce-gadolinium_dsc.json"
    top.write_text("{oops")
    runs, problems = collect_dsc_runs(layout_of(dataset))
    assert runs == [] and len(problems) == 2
    assert all(str(top) in problem for problem in problems)


def test_invalid_dataset_description_is_a_usage_error(dataset, tmp_path, capsys):
    (dataset / "dataset_description.json").write_text("{")
    message = _refused([dataset, tmp_path / "out", "participant", *FAST], capsys)
    assert "dataset_description.json" in message and "not valid JSON" in message


@pytest.mark.parametrize(("value", "shown"), [("30ms", "'30ms'"), (True, "True"),
                                              (None, "missing"), ([0.03], "list")])
def test_echo_time_that_is_not_a_number_is_refused_by_name(dataset, value, shown):
    meta = json.loads(_sidecar(dataset).read_text())
    meta["EchoTime"] = value
    _sidecar(dataset).write_text(json.dumps(meta))
    runs, problems = collect_dsc_runs(layout_of(dataset))
    assert [run.subject for run in runs] == ["02"]
    assert "'EchoTime'" in problems[0] and shown in problems[0]
    assert "sub-01/perf/sub-01_ce-gadolinium_dsc" in problems[0]


def _write_header_only(path, shape):
    """A gzip NIfTI whose header claims ``shape`` and which holds a few bytes of data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    with gzip.open(path, "wb") as handle:
        handle.write(header.binaryblock + b"\0" * 4 + b"\0" * 1000)


@pytest.mark.parametrize(("breakage", "expected"), [
    ("text", "not a readable NIfTI"),
    ("truncated", "truncated"),
    ("huge", "corrupt"),
    ("frames", "10000 volumes"),
    ("singular affine", "singular"),
])
def test_broken_image_is_refused_before_processing(dataset, breakage, expected):
    path = _dsc(dataset)
    if breakage == "text":
        path.write_text("this is not an image\n")
    elif breakage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif breakage == "huge":
        _write_header_only(path, (32767, 32767, 32767, 32767))
    elif breakage == "frames":
        _write_header_only(path, (48, 48, 12, 30000))
    else:
        image = nib.load(path)
        header = image.header.copy()
        affine = image.affine.copy()
        affine[:3, 2] = 0.0  # the slice axis collapsed
        header.set_qform(None, code=0)
        header["srow_x"], header["srow_y"], header["srow_z"] = affine[:3]
        header["sform_code"] = 1
        data = np.asarray(image.dataobj).astype(header.get_data_dtype()).tobytes("F")
        with gzip.open(path, "wb") as handle:
            handle.write(header.binaryblock + b"\0" * 4 + data)
    runs, problems = collect_dsc_runs(layout_of(dataset))
    assert [run.subject for run in runs] == ["02"]
    assert len(problems) == 1 and str(path) in problems[0] and expected in problems[0]


def test_mask_on_another_grid_is_refused(dataset, tmp_path):
    folder = tmp_path / "masks" / "sub-01" / "perf"
    folder.mkdir(parents=True)
    grid = nib.load(_dsc(dataset))
    shifted = grid.affine.copy()
    shifted[:3, 3] += 7.0
    data = np.zeros(grid.shape[:3], dtype=np.uint8)
    data[20:30, 20:30, 4:8] = 1
    mask = folder / "sub-01_label-tumor_mask.nii.gz"
    nib.Nifti1Image(data, shifted).to_filename(mask)
    runs, problems = collect_dsc_runs(layout_of(dataset), derivatives=[tmp_path / "masks"])
    assert [run.subject for run in runs] == ["02"]
    assert str(mask) in problems[0] and "affine" in problems[0]


def test_a_dataset_of_symbolic_links_is_read_like_a_copy(pristine, tmp_path):
    linked = tmp_path / "linked"
    subprocess.run(["cp", "-rs", str(pristine), str(linked)], check=True)
    layout = layout_of(linked)
    runs, problems = collect_asl_runs(layout)
    assert problems == [] and sorted(run.subject for run in runs) == ["01", "02"]
    direct, _ = collect_asl_runs(layout_of(pristine))
    assert [run.metadata.m0_type for run in runs] == [run.metadata.m0_type for run in direct]
    dsc_runs, dsc_problems = collect_dsc_runs(layout)
    assert dsc_problems == [] and len(dsc_runs) == 2


# --- Weights -----------------------------------------------------------------------------


def test_bad_weights_drop_only_their_method(tmp_path):
    from bids_perfusion.nn import phae

    weights = tmp_path / "phae.safetensors"
    shutil.copy(phae.bundled_weights(), weights)
    shutil.copy(Path(str(phae.bundled_weights())).with_suffix(".json"),
                weights.with_suffix(".json"))
    with weights.open("r+b") as handle:  # one byte changed: the sha256 no longer matches
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    options, problems = usable_weights(DSCOptions(methods=("osvd", "phae"),
                                                  phae_weights=str(weights)))
    assert options.methods == ("osvd",)
    assert len(problems) == 1 and str(weights) in problems[0] and "sha256" in problems[0]
    assert "--phae-weights" in problems[0]
    kept, none = usable_weights(DSCOptions(methods=("osvd", "phae")))
    assert kept.methods == ("osvd", "phae") and none == []


def test_weights_are_checked_without_torch_before_workers_fork():
    """torch's thread pools do not survive a fork: the parent of the worker processes
    must not run torch, so the check reads bytes only."""
    code = ("import sys\n"
            "from bids_perfusion.collect import usable_weights\n"
            "from bids_perfusion.workflows.options import DSCOptions\n"
            "options, problems = usable_weights(DSCOptions(methods=('phae', 'stunet')))\n"
            "assert options.methods == ('phae', 'stunet') and not problems, problems\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bundled_weights_name_the_models_of_their_method():
    from bids_perfusion.nn import cbv_models, phae
    from bids_perfusion.nn.weights import BUNDLED, read_card

    assert BUNDLED["phae"][1] == (phae.MODEL_NAME,)
    assert set(BUNDLED["stunet"][1]) == set(cbv_models.MODELS)
    assert read_card(phae.bundled_weights())["model"] in BUNDLED["phae"][1]
    assert read_card(cbv_models.bundled_weights())["model"] in BUNDLED["stunet"][1]


# --- Exit codes and crash reports ----------------------------------------------------------


def test_input_errors_are_told_from_internal_ones_in_crash_reports():
    crash = textwrap.dedent("""\
        Node: bids_perfusion_wf.sub_01_ce_gadolinium_acquired_wf.delta_r2star
        Traceback (most recent call last):
          File "x.py", line 1, in run
        bids_perfusion.errors.InputDataError: /d/sub-01_dsc.nii.gz: 12 brain voxel(s) hold NaN; fix
        """)
    assert input_error_of(crash) == "/d/sub-01_dsc.nii.gz: 12 brain voxel(s) hold NaN; fix"
    assert input_error_of("Traceback\nZeroDivisionError: division by zero\n") is None
    check = textwrap.dedent("""\
        Traceback (most recent call last):
          File "/x/bids_perfusion/interfaces/masks.py", line 50, in _run_interface
          File "/x/bids_perfusion/dsc/normalisation.py", line 40, in automatic_nawm_mask
        ValueError: too few voxels; give a NAWM mask with --derivatives
        """)
    assert input_error_of(check, "/d/sub-01_dsc.nii.gz") == (
        "/d/sub-01_dsc.nii.gz: too few voxels; give a NAWM mask with --derivatives")
    bug = check.replace("dsc/normalisation.py", "interfaces/masks.py")
    assert input_error_of(bug, "/d/sub-01_dsc.nii.gz") is None


def test_internal_error_in_a_node_exits_3_and_other_runs_are_written(dataset, tmp_path,
                                                                     monkeypatch):
    from bids_perfusion.interfaces import maps

    def broken(self, runtime):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(maps.BolusTiming, "_run_interface", broken)
    status = main([str(dataset), str(tmp_path / "out"), "participant", *FAST, "-w",
                   str(tmp_path / "work"), "--participant-label", "01"])
    assert status == errors.EXIT_INTERNAL
    # The ASL run of the same subject does not use that step: it is written.
    assert list((tmp_path / "out" / "sub-01" / "perf").glob("*_desc-consensus_cbf.nii.gz"))
    assert not list((tmp_path / "out" / "sub-01" / "perf").glob("*_dsc*cbf.nii.gz"))


# --- Provenance ----------------------------------------------------------------------------


def test_container_is_named_only_inside_one():
    from bids_perfusion.derivatives import container_type

    assert container_type({}) is None
    assert container_type({"BIDS_PERFUSION_CONTAINER": "docker"}) == "docker"
    assert container_type({"APPTAINER_CONTAINER": "/x.sif"}) == "apptainer"


def test_failed_data_check_of_a_core_is_an_input_error(dataset, tmp_path, caplog):
    """A brain mask of 20 voxels: the automatic steps of the DSC run cannot work on it."""
    folder = tmp_path / "masks" / "sub-01" / "perf"
    folder.mkdir(parents=True)
    grid = nib.load(_dsc(dataset))
    data = np.zeros(grid.shape[:3], dtype=np.uint8)
    data[24:26, 24:26, 5:10] = 1
    nib.Nifti1Image(data, grid.affine).to_filename(folder / "sub-01_label-brain_mask.nii.gz")
    status = main([str(dataset), str(tmp_path / "out"), "participant", *FAST, "-w",
                   str(tmp_path / "work"), "--participant-label", "01",
                   "--derivatives", str(tmp_path / "masks")])
    assert status == errors.EXIT_SKIPPED
    assert f"A run was not written: {_dsc(dataset)}: " in caplog.text
    assert "internal error" not in caplog.text


# --- Faults ------------------------------------------------------------------------------


def test_workers_die_with_a_killed_parent(tmp_path):
    pids = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import os, time
        from bids_perfusion.workflows.engine import MultiProcPlugin

        def work(path):
            with open(path, "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            time.sleep(120)

        if __name__ == "__main__":  # spawned workers import this file to find work()
            plugin = MultiProcPlugin(plugin_args={{"n_procs": 2}})
            futures = [plugin.pool.submit(work, {str(pids)!r}) for _ in range(2)]
            time.sleep(120)
        """)
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")])
    deadline = time.time() + 60
    while time.time() < deadline and (not pids.exists()
                                      or len(pids.read_text().split()) < 2):
        time.sleep(0.1)
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_workers_run_torch_after_the_parent_used_its_threads(tmp_path):
    """A worker forked after the parent ran torch with a thread pool waits forever on a
    lock of a thread that was not copied (it did in CI); spawned workers do not."""
    script = textwrap.dedent("""
        import torch
        from bids_perfusion.workflows.engine import MultiProcPlugin

        def work():
            a = torch.ones(256, 256)
            return float((a @ a).sum())

        if __name__ == "__main__":
            torch.set_num_threads(2)
            a = torch.ones(512, 512)
            (a @ a).sum()
            plugin = MultiProcPlugin(plugin_args={"n_procs": 2})
            futures = [plugin.pool.submit(work) for _ in range(2)]
            print([future.result(timeout=100) for future in futures])
        """)
    (tmp_path / "parent.py").write_text(script)
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, str(tmp_path / "parent.py")], env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[16777216.0, 16777216.0]"
