"""The run configuration (saved, loaded back) and the console of ``bids-perfusion``.

A participant run prints one line per step and a summary, keeps nipype's log in
``output_dir/logs/`` and saves its configuration there; so does a group run.
"""

import json
import logging
import re

import pytest

from bids_perfusion import console
from bids_perfusion.cli.parser import build_parser, run_config
from bids_perfusion.cli.run import main
from bids_perfusion.config import RunConfig
from bids_perfusion.phantom import PhantomConfig, write_dataset

FAST = ["--skip-bids-validation", "--no-leakage-correction", "--nprocs", "1"]


def test_configuration_round_trips(tmp_path):
    argv = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant",
            "--participant-label", "01", "--dsc-methods", "ssvd,tikhonov",
            "--ssvd-threshold", "0.15", "--simulate-dose", "0.25", "0.5",
            "--derivatives", str(tmp_path), "--m0-scale", "2", "--t1-blood", "1.6",
            "--grade-column", "who", "--mem", "3.5", "-v"]
    args = build_parser().parse_args(argv)
    config = run_config(args, tmp_path / "bids", tmp_path / "out", tmp_path / "work")
    assert config.dsc.method_parameters == {"ssvd": {"threshold": 0.15}}
    assert config.dsc.simulate_doses == (0.5, 0.25) and config.asl.t1_blood == 1.6
    assert config.group.grade_column == "who" and config.execution.verbose == 1
    path, run_id = config.save("bids-perfusion " + " ".join(argv))
    assert path == tmp_path / "out" / "logs" / f"config-{run_id}.json"
    saved = json.loads(path.read_text())
    assert saved["command"].endswith("--mem 3.5 -v")
    assert {"bids-perfusion", "python", "nipype", "numpy", "torch"} <= set(saved["versions"])
    assert RunConfig.load(path) == config


def test_verbose_shows_nipype_on_the_console(tmp_path):
    for verbose, level in ((0, logging.CRITICAL + 1), (1, logging.INFO), (2, logging.DEBUG)):
        handler = console.log_to_file(tmp_path / "run.log", verbose)
        try:
            nipype_console = [h for h in logging.getLogger("nipype").handlers
                              if h is not handler]
            assert {h.level for h in nipype_console} == {level}
            assert handler.level == min(level, logging.INFO)
        finally:
            console.close_log(handler)


@pytest.mark.slow
def test_participant_console_is_short_and_the_log_complete(tmp_path, capfd):
    """The smallest phantom: one subject, one DSC run."""
    config = PhantomConfig(grades=("HGG",), matrix=(24, 24, 6), fov_mm=220.0,
                           slab_mm=64.0).with_(dsc={"n_frames": 30}, asl=None)
    root = write_dataset(tmp_path / "bids", config)
    out, work = tmp_path / "out", tmp_path / "work"
    argv = [str(root), str(out), "participant", "-w", str(work), *FAST]
    assert main(argv) == 0
    printed = capfd.readouterr()
    lines = (printed.out + printed.err).splitlines()
    assert len(lines) < 40, "\n".join(lines)
    assert any("Summary: 1 run(s) written, 0 skipped" in line for line in lines)
    steps = [re.search(r"\[ *(\d+)/(\d+)\] (\w+)$", line) for line in lines]
    steps = [(int(m[1]), int(m[2]), m[3]) for m in steps if m]
    total = steps[-1][1]  # one line per step, counted up to the completion record
    assert [n for n, _of, _name in steps] == list(range(1, total + 1))
    assert steps[-1][2] == "run_record" and total >= 10
    assert not any("nipype.workflow" in line for line in lines)
    logs = out / "logs"
    log = next(logs.glob("bids-perfusion-*.log")).read_text()
    assert '[Node] Finished "deconvolve_osvd"' in log and "nipype.workflow" in log
    assert "Summary: 1 run(s) written" in log
    saved = next(logs.glob("config-*.json"))
    args = build_parser().parse_args(argv)
    assert RunConfig.load(saved) == run_config(args, root, out, work)

    assert main([str(root), str(out), "group"]) == 1  # one class: no grading
    levels = sorted(json.loads(p.read_text())["execution"]["analysis_level"]
                    for p in logs.glob("config-*.json"))
    assert levels == ["group", "participant"]
