"""PHAE and the deep-learning infrastructure: physics decoder, training, weights, inference."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import raw, truth

from bids_perfusion import constants, records
from bids_perfusion.dsc import kinetics
from bids_perfusion.dsc.relaxivity import at_field
from bids_perfusion.nn import phae, phae_synthetic, training, weights
from bids_perfusion.nn.device import select_device
from bids_perfusion.nn.samples import run_curves, training_arrays
from bids_perfusion.phantom.config import NORMAL_TISSUES, DSCAcquisition
from bids_perfusion.phantom.dsc import arterial_input, compartment_curves

DT = 1.5
N_FRAMES = 60
TINY = phae.PHAEConfig(channels=(4, 8, 8, 8), dt=DT, window=40, pool_size=4)


def _aif():
    acq = DSCAcquisition(time_oversampling=1)
    t = np.arange(N_FRAMES) * DT
    return t, arterial_input(t, acq, 1.0), acq


def _lorentzian_numpy(mtt, t, dt, delay=0.0):
    """Independent form of the decoder's residue: r(t − δ) integrated over each frame by
    quadrature, rescaled so that ∫ = MTT on the grid."""
    from scipy.integrate import quad

    def r(x):
        return 1.0 / (1.0 + (np.pi * (x - delay) / (2.0 * mtt)) ** 2) if x > delay else 0.0

    area = np.array([quad(r, start, start + dt, points=[delay] if start < delay < start + dt
                          else None)[0] for start in t])
    return mtt * area / (dt * area.sum())


@pytest.mark.parametrize("kind", phae.RESIDUES)
def test_residue_integrates_to_mtt(kind):
    mtt = torch.tensor([0.5, 2.0, 4.0, 8.0, 15.0], dtype=torch.float64)
    residue = phae.residue_function(mtt, N_FRAMES, DT, kind)
    np.testing.assert_allclose((DT * residue.sum(-1)).numpy(), mtt.numpy(), rtol=1e-12)
    assert torch.all(residue[:, 1:] <= residue[:, :-1])  # non-increasing
    delayed = phae.residue_function(mtt, N_FRAMES, DT, kind, torch.full_like(mtt, 2.0))
    np.testing.assert_allclose((DT * delayed.sum(-1)).numpy(), mtt.numpy(), rtol=1e-12)
    assert torch.all(delayed[:, 0] == 0) and torch.all(delayed[:, 1] > 0)  # 2 s = 1.33 frames
    # On a fine, long grid the rescaling vanishes: R(0) -> 1, the analytic ∫_0^∞ r = MTT.
    fine = phae.residue_function(torch.tensor([5.0], dtype=torch.float64), 400_000, 0.005, kind)
    assert fine[0, 0].item() == pytest.approx(1.0, abs=2e-3)


def test_decoder_reproduces_convolution_exactly():
    t, aif, _ = _aif()
    mtt = np.array([1.5, 3.3, 6.0, 12.0])
    delay = np.array([0.0, 0.7, 2.0, 4.5])
    expected = kinetics.convolve(aif, np.stack(
        [_lorentzian_numpy(m, t, DT, d) for m, d in zip(mtt, delay, strict=True)]), DT)
    model = phae.PHAE(TINY)
    got, _ = model.decode(torch.tensor(mtt, dtype=torch.float32),
                          torch.tensor(delay, dtype=torch.float32),
                          torch.tensor(aif, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5 * expected.max())


def test_a_whole_frame_of_delay_shifts_the_decoded_curve_by_one_frame():
    _t, aif, _ = _aif()
    model = phae.PHAE(TINY)
    mtt = torch.tensor([3.0, 8.0])
    aif = torch.tensor(aif, dtype=torch.float32)
    undelayed, _ = model.decode(mtt, torch.zeros(2), aif)
    delayed, _ = model.decode(mtt, torch.full((2,), 2 * DT), aif)
    # Same residue two frames later; the rescaling to ∫ = MTT differs only by the tail
    # the window loses, so compare shapes.
    shifted = undelayed[:, :-2] / undelayed[:, :-2].sum(-1, keepdim=True)
    torch.testing.assert_close(delayed[:, 2:] / delayed[:, 2:].sum(-1, keepdim=True),
                               shifted, rtol=0, atol=1e-6)
    assert torch.all(delayed[:, :2].abs() < 1e-5 * delayed.max())  # FFT rounding


def test_decoder_reproduces_the_phantom_forward_model():
    """Exponential residue, no delay or dispersion: the phantom's own tissue curve.

    The phantom samples exp(-t/MTT) at mid-points without rescaling, so its residue
    integrates to Δt Σ r = Δt / (2 sinh(Δt / 2 MTT)); the decoder's integrates to MTT.
    """
    t, aif, acq = _aif()
    acq = replace(acq, residue="exponential")
    for name in ("GM", "WM"):
        tissue = replace(NORMAL_TISSUES[name], delay=0.0, dispersion=0.0)
        curve, _ = compartment_curves(t, aif, [tissue], acq)
        flow = constants.RHO_BRAIN / constants.KH * tissue.cbf / 6000.0
        model = phae.PHAE(phae.PHAEConfig(dt=DT, residue="exponential"))
        got, _ = model.decode(torch.tensor([tissue.mtt]), torch.tensor([0.0]),
                              torch.tensor(aif, dtype=torch.float32))
        # The frame average of exp(-t/MTT) is its mid-point sample times a constant, so
        # both residues rescaled to ∫ = MTT on the window are the same vector.
        window = kinetics.residue_exponential(t + DT / 2, tissue.mtt).sum() * DT
        np.testing.assert_allclose(flow * got[0].numpy() * window / tissue.mtt, curve[0],
                                   rtol=0, atol=1e-6 * curve.max())


def test_forward_matches_the_area_of_the_curve():
    t, aif, _ = _aif()
    tissue = kinetics.convolve(aif, 0.01 * _lorentzian_numpy(4.0, t, DT, 1.0), DT)
    model = phae.PHAE(TINY).eval()
    inputs = torch.tensor(tissue[None] / tissue.max(), dtype=torch.float32)
    out = model(inputs, torch.tensor(aif / aif.max(), dtype=torch.float32))
    shape, _ = model.decode(out["mtt"], out["delay"],
                            torch.tensor(aif / aif.max(), dtype=torch.float32))
    assert out["amplitude"].item() == pytest.approx(float(inputs.sum() / shape.sum()),
                                                    rel=1e-5)
    assert out["reconstruction"].sum().item() == pytest.approx(inputs.sum().item(), rel=1e-5)
    # The untrained encoder starts near mtt_init (4 s) and delay 0.
    assert out["mtt"].item() == pytest.approx(4.0, rel=0.5)
    assert abs(out["delay"].item()) < 2.0
    # A curve the decoder can make exactly is reconstructed exactly at its MTT and delay.
    exact, _ = model.decode(torch.tensor([5.0]), torch.tensor([1.5]),
                            torch.tensor(aif, dtype=torch.float32))
    k = phae.area_amplitude(3.0 * exact, exact)
    assert k.item() == pytest.approx(3.0, rel=1e-6)


def test_gradients_flow_to_every_encoder_parameter():
    t, aif, _ = _aif()
    rng = np.random.default_rng(0)
    mtt = rng.uniform(2, 8, 16)
    tissue = np.stack([kinetics.convolve(aif, 0.01 * _lorentzian_numpy(m, t, DT), DT)
                       for m in mtt])
    scale = tissue.max()
    batch = {"tissue": torch.tensor(tissue / scale, dtype=torch.float32),
             "aif": torch.tensor(np.tile(aif / aif.max(), (16, 1)), dtype=torch.float32)}
    model = phae.PHAE(TINY)
    phae.loss(model, batch).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.all(torch.isfinite(parameter.grad)), name
        assert parameter.grad.abs().sum() > 0, name


def _synthetic_set(n_subjects, seed):
    ranges = phae_synthetic.CurveRanges(snr=(50.0, 100.0), cbv=(3.0, 8.0), aif_peak=(4.0, 8.0),
                                        mtt=(2.0, 10.0), delay=(0.0, 1.0), dispersion=(0, 0.5))
    values = phae_synthetic.synthetic_arrays(TINY, n_subjects, 128, seed, ranges)
    return ({k: torch.from_numpy(np.ascontiguousarray(values[k])) for k in ("tissue", "aif")},
            values["mtt"])


def test_tiny_configuration_trains_on_cpu_and_lowers_the_loss(one_thread):
    train_set, _ = _synthetic_set(4, 0)
    val_set, mtt = _synthetic_set(2, 1)
    training.seed_everything(0)
    model = phae.PHAE(TINY)
    before = training.evaluate(model, phae.loss, val_set, 256, "cpu")
    history = []
    config = training.TrainingConfig(epochs=12, batch_size=64, lr=1e-2, progress=False)
    result = training.train(model, phae.loss, train_set, val_set, config, "cpu",
                            log=history.append)
    assert len(history) == 12 and result.best_val_loss == min(h["val_loss"] for h in history)
    assert result.best_val_loss < 0.7 * before
    estimate, _delay = phae.predict(model, val_set["tissue"].numpy(),
                                    val_set["aif"][0].numpy())
    assert np.corrcoef(np.log(estimate), np.log(mtt))[0, 1] > 0.7
    # Same seed, same weights.
    training.seed_everything(0)
    again = phae.PHAE(TINY)
    training.train(again, phae.loss, train_set, val_set, config, "cpu")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)


def test_split_by_subject_is_reproducible_and_disjoint():
    subjects = [f"sub-{i:02d}" for i in range(20)]
    split = training.split_subjects(subjects, 0.15, 0.15, seed=3)
    assert split == training.split_subjects(reversed(subjects), 0.15, 0.15, seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert sorted(split["train"] + split["val"] + split["test"]) == subjects
    assert split != training.split_subjects(subjects, 0.15, 0.15, seed=4)
    with pytest.raises(ValueError, match="at least two subjects"):
        training.split_subjects(["sub-01"])


def test_weights_round_trip_and_integrity(tmp_path):
    model = phae.PHAE(TINY)
    path = tmp_path / "phae.safetensors"
    card = weights.save_weights(model.state_dict(), path,
                                {"model": "phae", "configuration": TINY.as_dict()})
    assert set(weights.CARD_KEYS) <= set(card) and len(card["sha256"]) == 64
    loaded, read = phae.load_model(path)
    assert read["sha256"] == card["sha256"] and loaded.config == TINY
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)

    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(weights.WeightsError, match=r"sha256 .* does not match"):
        weights.load_weights(path)
    # A truncated file whose card was rewritten to match: caught by the parser.
    path.write_bytes(bytes(data[:100]))
    card_file = weights.card_path(path)
    card_file.write_text(json.dumps({**card, "sha256": records.sha256(path)}))
    with pytest.raises(weights.WeightsError, match="cannot read"):
        weights.load_weights(path)
    with pytest.raises(weights.WeightsError, match="not 'stunet'"):
        weights.load_weights(path, expected_model="stunet")
    card_file.unlink()
    with pytest.raises(weights.WeightsError, match="no model card"):
        weights.load_weights(path)


def test_bundled_weights_match_their_card():
    _state, card = weights.load_weights(phae.bundled_weights(), expected_model="phae")
    assert card["data"]["synthetic"] is True
    assert card["command"].startswith("bids-perfusion-train phae")
    assert phae.bundled_weights().stat().st_size < 4 * 2**20
    assert {"train", "val", "test", "seed"} <= set(card["split"])


def test_fused_encoder_matches_the_trained_one():
    """BatchNorm folded into the convolutions: the same MTT to float rounding."""
    torch.manual_seed(3)
    model = phae.PHAE(phae.PHAEConfig(channels=(8, 16)))
    model.train()
    model(torch.rand(64, 30), torch.rand(30))  # move the running statistics off (0, 1)
    model.eval()
    tissue, aif = torch.rand(16, 30), torch.rand(30)
    with torch.inference_mode():
        expected = model.encode(tissue, aif)
        fused = model.fused()
        assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())
        torch.testing.assert_close(fused.encode(tissue, aif), expected, rtol=1e-5,
                                   atol=1e-6)


def test_predictions_do_not_depend_on_the_batch_size():
    """The CPU passes of ``phae.CPU_BATCH_SIZE`` voxels (chosen for speed) give the MTT and
    delay of one pass over all voxels, to float rounding."""
    torch.manual_seed(4)
    model = phae.PHAE(phae.PHAEConfig(channels=(8, 16))).eval()
    rng = np.random.default_rng(4)
    tissue = rng.random((3 * phae.CPU_BATCH_SIZE + 5, 30), dtype=np.float32)
    aif = rng.random(30).astype(np.float32)
    in_passes = phae.predict(model, tissue, aif)
    at_once = phae.predict(model, tissue, aif, batch_size=len(tissue))
    for a, b in zip(in_passes, at_once, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            select_device("cuda")


def _phantom_curves(noisy, subject):
    import json as _json

    root, _config = noisy
    sidecar = _json.loads((root / f"sub-{subject}" / "perf"
                           / f"sub-{subject}_ce-gadolinium_dsc.json").read_text())
    arteries = truth(root, subject, "label-arteries_mask") > 0
    return run_curves([raw(root, subject, "ce-gadolinium_dsc")], [sidecar["EchoTime"]],
                      sidecar["RepetitionTime"], subject, aif_mask=arteries,
                      field_strength=sidecar["MagneticFieldStrength"])


def test_bundled_phae_maps_on_a_phantom_are_plausible(noisy):
    """GM and WM medians near the truth with the phantom's true AIF: CBF and MTT within
    30 %. With the AIF of the phantom's arterial voxels, whose partial volume with tissue
    broadens it (peak 3.9 mM for 6), the MTT reads short (about 0.77 of the truth in GM,
    docs/phae.md § Known limitations)."""
    from bids_perfusion.tsv import read_tsv_columns

    root, _ = noisy
    model, _ = phae.load_model()
    for subject in ("01", "02"):
        curves = _phantom_curves(noisy, subject)
        table = read_tsv_columns(root / "derivatives" / "phantom-truth" / f"sub-{subject}"
                                 / "perf" / f"sub-{subject}_desc-truth_aif.tsv")
        aif = np.interp(curves.frame_times, table["time"], table["concentration"])
        maps = phae.estimate_maps(model, curves.tissue, aif, curves.frame_times,
                                  cbv_end=curves.cbv_end)
        for roi in ("GM", "WM"):
            mask = (truth(root, subject, f"label-{roi}_mask") > 0)[curves.mask]
            for name in ("cbf", "mtt"):
                reference = truth(root, subject, f"desc-truth_{name}")[curves.mask][mask]
                ratio = np.median(maps[name][mask]) / np.median(reference)
                assert 0.7 < ratio < 1.3, (subject, roi, name, ratio)
        assert np.all(maps["mtt"] > 0) and np.all(np.isfinite(maps["cbf"]))


def test_training_arrays_normalise_every_curve(noisy):
    curves = [_phantom_curves(noisy, s) for s in ("01", "02")]
    arrays = training_arrays(curves, TINY, max_voxels=300, seed=1)
    assert arrays["tissue"].shape == (600, TINY.window) == arrays["aif"].shape
    np.testing.assert_allclose(np.abs(arrays["tissue"]).max(axis=1), 1.0, rtol=1e-6)
    for index in (0, 1):
        rows = arrays["subject"] == index
        assert arrays["aif"][rows].max() == pytest.approx(1.0)
        # The window starts `lead` s before the AIF peak.
        assert np.argmax(arrays["aif"][rows][0]) == round(TINY.lead / TINY.dt)
    again = training_arrays(curves, TINY, max_voxels=300, seed=1)
    np.testing.assert_array_equal(again["tissue"], arrays["tissue"])


def test_train_command_writes_weights_card_and_log(noisy, tmp_path):
    from bids_perfusion.cli import train

    root, _ = noisy
    out = tmp_path / "model"
    assert train.main(["phae", str(root), str(out), "--epochs", "1", "--device", "cpu",
                       "--max-voxels-per-subject", "128", "--val-fraction", "0.5",
                       "--test-fraction", "0", "--quiet", "--seed", "7",
                       "--channels", "4", "8", "8", "8", "--synthetic-subjects", "4",
                       "--synthetic-voxels", "16", "--truth-weight", "0.5",
                       "--synthetic-repetition-time", "1.0", "1.6",
                       "--synthetic-frames", "50", "105"]) == 0
    _state, card = weights.load_weights(out / "phae.safetensors", expected_model="phae")
    assert card["split"]["train"] and card["split"]["val"] and card["split"]["seed"] == 7
    # 128 phantom voxels and two synthetic subjects of 16 voxels (4 split 2/2/0).
    assert card["data"]["synthetic"] and card["data"]["samples"]["train"] == 128 + 32
    assert card["data"]["synthetic_curves"]["subjects"] == {"train": 2, "val": 2, "test": 0}
    assert card["configuration"]["channels"] == [4, 8, 8, 8]
    # The synthetic acquisitions stay in the band asked for (a held-out band above it);
    # the phantom's run (TR 1.5 s, 60 frames) lies inside it.
    ranges = card["training_ranges"]
    assert ranges["RepetitionTime"] == [1.0, 1.6] and ranges["Frames"] == [50, 105]
    drawn = card["data"]["synthetic_curves"]["ranges"]
    assert drawn["repetition_time"] == [1.0, 1.6] and drawn["frames"] == [50, 105]
    assert card["metrics"]["best_epoch"] == 1 and "--epochs 1" in card["command"]
    assert (out / "losses.tsv").read_text().splitlines()[0].split("\t") == [
        "epoch", "lr", "train_loss", "val_loss", "seconds"]
    with pytest.raises(SystemExit):
        train.main(["phae", str(root), str(out), "--quiet"])  # refuses to overwrite


def test_train_command_line_makes_the_request_of_the_recipe(tmp_path):
    """bids-perfusion-train only parses: its request is the recipe API's dataclass."""
    from bids_perfusion.cli import train
    from bids_perfusion.nn.recipes import RECIPES, TrainingRequest
    from bids_perfusion.nn.recipes.phae import PHAEOptions

    assert list(RECIPES) == ["phae", "stunet", "hess", "superres", "deepasl", "dilatedconv",
                            "deepasl-multidelay"]
    argv = ["phae", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "m"),
            "--residue", "exponential", "--max-voxels-per-subject", "0", "--no-amp", "-q"]
    request = train.training_request(train.build_parser().parse_args(argv), argv)
    assert request == TrainingRequest(
        model="phae", bids_dirs=(tmp_path / "a", tmp_path / "b"), output=tmp_path / "m",
        options=PHAEOptions(residue="exponential"), max_voxels_per_subject=None, amp=False,
        progress=False, command="bids-perfusion-train " + " ".join(argv))
    assert request.recipe is RECIPES["phae"] and request.recipe.batch_size == 1024


def test_train_help_does_not_import_torch():
    code = ("import sys; import bids_perfusion.cli.train as t; t.build_parser().format_help();"
            " assert 'torch' not in sys.modules and 'numpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_phae_inference_interface(noisy, tmp_path, monkeypatch):
    import nibabel as nib

    from bids_perfusion.dsc.signal import series_to_delta_r2star
    from bids_perfusion.interfaces.phae import PHAEInference
    from bids_perfusion.tsv import write_tsv

    root, _ = noisy
    monkeypatch.chdir(tmp_path)
    curves = _phantom_curves(noisy, "01")
    series = raw(root, "01", "ce-gadolinium_dsc")
    delta, _start, _stop = series_to_delta_r2star([series], [0.03], curves.mask)
    source = nib.load(root / "sub-01" / "perf" / "sub-01_ce-gadolinium_dsc.nii.gz")
    nib.Nifti1Image(delta, source.affine).to_filename(tmp_path / "delta.nii.gz")
    nib.Nifti1Image(curves.mask.astype(np.uint8), source.affine).to_filename(
        tmp_path / "brain.nii.gz")
    rows = [{"time": t, "delta_r2star": 0.0, "concentration": c}
            for t, c in zip(curves.frame_times, curves.aif, strict=True)]
    aif_tsv = write_tsv(rows, ("time", "delta_r2star", "concentration"), "aif.tsv")
    result = PHAEInference(delta_r2star=str(tmp_path / "delta.nii.gz"),
                           brain_mask=str(tmp_path / "brain.nii.gz"), aif_tsv=aif_tsv,
                           device="cpu", kh=constants.KH, rho=constants.RHO_BRAIN,
                           relaxivity=at_field(curves.info["MagneticFieldStrength"]).sidecar()
                           ).run()
    outputs = result.outputs
    cbf, mtt, cbv = (np.asarray(nib.load(getattr(outputs, k)).dataobj)
                     for k in ("cbf", "mtt", "cbv"))
    brain = curves.mask
    np.testing.assert_allclose(cbf[brain], 60 * cbv[brain] / mtt[brain], rtol=1e-4)
    assert np.all(cbf[~brain] == 0)
    card = json.loads(weights.card_path(phae.bundled_weights()).read_text())
    assert outputs.metadata["ModelWeightsSHA256"] == card["sha256"]
    assert outputs.metadata["Device"] == "cpu"
    assert outputs.metadata["TissueRelaxivity"] == 87.0  # the phantom declares 1.5 T
    assert outputs.metadata["OutsideTrainingRanges"] == []  # the phantom is inside them
