"""ASL numeric core on noise-free phantoms: context, M0, consensus and multi-delay CBF/ATT.

The series go through the core only (no nipype): aslcontext -> validated metadata -> ΔM
per pair -> M0 reference -> CBF. "Exact" voxels are GM or WM free of CSF, where the
phantom's signal is the kinetic model with one transit time and M0 recovers at TR 10 s.
"""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import load, small_config, truth

from bids_perfusion import constants
from bids_perfusion.asl import consensus, context, kinetics, m0
from bids_perfusion.asl.metadata import ASLRunMetadata
from bids_perfusion.asl.multi_delay import MultiDelayModel
from bids_perfusion.dsc.metadata import MetadataError
from bids_perfusion.phantom import write_dataset

MULTI_PLDS = (0.25, 0.5, 1.0, 1.5, 2.0, 2.5)


def _phantom(tmp_path_factory, name, **asl):
    config = small_config(grades=("HGG",), dsc=None, asl={"snr": float("inf"), **asl})
    return write_dataset(tmp_path_factory.mktemp(name) / "bids", config)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Noise-free single-subject phantoms, by name."""
    return {
        "pcasl": _phantom(tmp_path_factory, "pcasl"),
        "label_first": _phantom(tmp_path_factory, "label_first", label_first=True),
        "included": _phantom(tmp_path_factory, "included", m0_type="Included"),
        "pasl": _phantom(tmp_path_factory, "pasl", label_type="PASL", plds=(2.6,),
                         bolus_cutoff=0.8, background_suppression=True),
        "pcasl_2d": _phantom(tmp_path_factory, "pcasl_2d", readout="2D"),
        "multi": _phantom(tmp_path_factory, "multi", plds=MULTI_PLDS, n_pairs=(1,)),
    }


def _files(root):
    perf = Path(root) / "sub-01" / "perf"
    return (perf / "sub-01_asl.nii.gz", perf / "sub-01_aslcontext.tsv",
            perf / "sub-01_m0scan.nii.gz")


def _metadata(root, sidecar=None, volume_types=None, m0_shape=None):
    series, ctx, m0_file = _files(root)
    sidecar = sidecar or json.loads(series.with_name("sub-01_asl.json").read_text())
    separate = sidecar.get("M0Type") == "Separate"
    return ASLRunMetadata.from_sidecar(
        series, sidecar, ctx, volume_types or context.read_aslcontext(ctx),
        nib.load(series).shape, m0_file if separate else None,
        json.loads(m0_file.with_name("sub-01_m0scan.json").read_text()) if separate else None,
        (m0_shape or nib.load(m0_file).shape) if separate else None)


def quantify(root):
    """CBF (and ATT for multi-delay) of a phantom through the core; returns a dict."""
    meta = _metadata(root)
    series = load(_files(root)[0])
    differences = context.difference_images(series, meta.context)
    means, delays, durations, counts = context.mean_by_delay(differences, meta.delays,
                                                             meta.durations)
    kind = meta.m0_type
    reference = m0.m0_reference(
        kind, m0_volumes=(load(meta.m0_file) if kind == "Separate"
                          else series[..., list(meta.context.indices("m0scan"))]),
        repetition_time=meta.m0_repetition_time)
    efficiency, _ = meta.efficiency()
    t1b = meta.t1_blood()
    if not meta.multi_delay:
        cbf = consensus.single_delay_cbf(
            means[..., 0], reference.image, meta.label_type, delays[0], t1b, efficiency,
            labeling_duration=None if durations is None else durations[0],
            bolus_duration=meta.bolus_cutoff_delay, slice_timing=meta.slice_timing)
        return {"cbf": cbf, "meta": meta, "m0": reference}
    inside = reference.image > 0
    model = MultiDelayModel(meta.label_type, delays, t1b, efficiency,
                            labeling_duration=durations,
                            bolus_duration=meta.bolus_cutoff_delay, weights=counts)
    fit = model.fit(means[inside] / reference.image[inside][:, None])
    cbf, att = np.zeros(inside.shape), np.zeros(inside.shape)
    cbf[inside], att[inside] = fit.cbf, fit.att
    return {"cbf": cbf, "att": att, "meta": meta, "m0": reference}


def _exact(root):
    tissue = (truth(root, "01", "label-GM_mask") + truth(root, "01", "label-WM_mask")) > 0
    return tissue & (truth(root, "01", "label-CSF_probseg") < 0.01)


# --- aslcontext ------------------------------------------------------------------------


def test_context_pairs_in_either_order_and_trims_per_volume_lists():
    ctx = context.ASLContext(("m0scan", "label", "control", "label", "control", "noRF",
                              "deltam"))
    assert ctx.pairs == ((2, 1), (4, 3))
    assert ctx.difference_volumes == (1, 3, 6)
    plds = [0.0, 1.5, 1.5, 2.0, 2.0, 0.0, 2.5]
    assert ctx.take(plds, ctx.difference_volumes) == (1.5, 2.0, 2.5)
    assert ctx.take(1.8, ctx.difference_volumes) == (1.8, 1.8, 1.8)
    series = np.arange(7.0)[None, None, None, :] * np.ones((2, 2, 1, 7))
    assert context.difference_images(series, ctx)[0, 0, 0].tolist() == [1.0, 1.0, 6.0]


def test_context_file_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "sub-01_aslcontext.tsv"
    bad.write_text("volume_type\ncontrol\nlabell\n")
    with pytest.raises(MetadataError, match=r"sub-01_aslcontext.tsv.*'volume_type'.*labell"):
        context.read_aslcontext(bad)
    (tmp_path / "x.tsv").write_text("type\ncontrol\n")
    with pytest.raises(MetadataError, match=r"x.tsv: field 'volume_type' is missing"):
        context.read_aslcontext(tmp_path / "x.tsv")


# --- M0 --------------------------------------------------------------------------------


def test_m0_t1_recovery_correction_and_scale():
    truth_m0 = np.full((2, 2, 2), 1000.0)
    volumes = truth_m0[..., None] * (1 - np.exp(-2.0 / 1.33)) * np.ones(3)
    reference = m0.m0_reference("Separate", m0_volumes=volumes, repetition_time=2.0,
                                t1_tissue=1.33, scale=2.0, source="m0.nii.gz")
    np.testing.assert_allclose(reference.image, 2000.0)
    assert reference.metadata["M0Scale"] == 2.0
    assert reference.metadata["M0RecoveryFactor"] == pytest.approx(1 / (1 - np.exp(-2 / 1.33)))
    assert reference.metadata["M0Volumes"] == 3
    estimate = m0.m0_reference("Estimate", estimate=500.0, shape=(2, 2, 2))
    np.testing.assert_allclose(estimate.image, 500.0)
    assert estimate.metadata["M0RecoveryFactor"] == 1.0
    absent = m0.m0_reference("Absent", control_volumes=volumes, repetition_time=2.0,
                             t1_tissue=1.33)
    np.testing.assert_allclose(absent.image, 1000.0)


# --- single delay -----------------------------------------------------------------------


def test_pcasl_single_pld_gives_true_cbf(phantoms):
    root = phantoms["pcasl"]
    result = quantify(root)
    exact = _exact(root)
    assert exact.sum() > 100
    np.testing.assert_allclose(result["cbf"][exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.005)


def test_pasl_single_ti_with_background_suppression_gives_true_cbf(phantoms):
    root = phantoms["pasl"]
    result = quantify(root)
    efficiency, source = result["meta"].efficiency()
    assert efficiency == pytest.approx(constants.LABEL_EFFICIENCY["PASL"] * 0.95 ** 2)
    assert "2 background" in source
    exact = _exact(root)
    np.testing.assert_allclose(result["cbf"][exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.005)


def test_2d_readout_uses_slice_timing(phantoms):
    root = phantoms["pcasl_2d"]
    result = quantify(root)
    assert result["meta"].slice_timing is not None
    exact = _exact(root)
    reference = truth(root, "01", "desc-truth_cbf")[exact]
    np.testing.assert_allclose(result["cbf"][exact], reference, rtol=0.005)
    # Without slice timing, the late slices are biased low.
    meta = result["meta"]
    series = load(_files(root)[0])
    delta = context.difference_images(series, meta.context).mean(-1)
    naive = consensus.pcasl_cbf(delta, result["m0"].image, 1.8, 1.8, 1.65, 0.85)
    assert np.median(naive[exact] / reference) < 0.99


def test_label_first_and_included_m0_give_the_same_cbf(phantoms):
    reference = quantify(phantoms["pcasl"])["cbf"]
    label_first = quantify(phantoms["label_first"])
    assert label_first["meta"].context.volume_types[0] == "label"
    np.testing.assert_allclose(label_first["cbf"], reference, rtol=1e-6, atol=1e-6)
    included = quantify(phantoms["included"])
    assert included["meta"].m0_type == "Included"
    assert included["m0"].metadata["M0Volumes"] == 2
    np.testing.assert_allclose(included["cbf"], reference, rtol=1e-6, atol=1e-6)


# --- multiple delays --------------------------------------------------------------------


def test_multi_pld_fit_gives_true_cbf_and_att(phantoms):
    root = phantoms["multi"]
    result = quantify(root)
    assert result["meta"].multi_delay
    exact = _exact(root)
    np.testing.assert_allclose(result["cbf"][exact], truth(root, "01", "desc-truth_cbf")[exact],
                               rtol=0.02)
    np.testing.assert_allclose(result["att"][exact], truth(root, "01", "desc-truth_att")[exact],
                               atol=0.05)


@pytest.mark.parametrize("label_type", ["PCASL", "PASL"])
@pytest.mark.parametrize("t1_tissue", [None, 1.33])
def test_multi_delay_model_recovers_random_voxels(label_type, t1_tissue):
    rng = np.random.default_rng(1)
    n = 4000
    cbf, att = rng.uniform(5, 120, n), rng.uniform(0.4, 2.0, n)
    if label_type == "PCASL":
        delays = np.array([0.25, 0.5, 1.0, 1.5, 2.0, 2.5])
        model = MultiDelayModel("PCASL", delays, 1.65, 0.85, labeling_duration=1.8,
                                t1_tissue=t1_tissue)
    else:
        delays = np.array([0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4])
        model = MultiDelayModel("PASL", delays, 1.65, 0.98, bolus_duration=0.5,
                                t1_tissue=t1_tissue)
    fit = model.fit(model.predict(cbf, att))
    np.testing.assert_allclose(fit.cbf, cbf, rtol=1e-4)
    np.testing.assert_allclose(fit.att, att, atol=1e-4)


def test_multi_delay_weighted_delay_initialisation_is_close():
    """Dai et al. (2012): WD alone gives ATT (T1' = T1b) before any iteration."""
    delays = np.array([0.5, 1.0, 1.5, 2.0, 2.5])
    model = MultiDelayModel("PCASL", delays, 1.65, 0.85, labeling_duration=1.8)
    att = np.linspace(0.6, 2.4, 50)
    cbf0, att0 = model.initial_guess(model.predict(np.full(50, 50.0), att))
    np.testing.assert_allclose(att0, att, atol=0.005)
    np.testing.assert_allclose(cbf0, 50.0, rtol=0.01)


def test_multi_delay_kinetics_consistency():
    """The model of the fit is the phantom's kinetic model."""
    model = MultiDelayModel("PCASL", np.array([1.0, 2.0]), 1.65, 0.85, labeling_duration=1.8)
    expected = kinetics.pcasl_delta_m(np.array([1.0, 2.0]), 60.0, 1.2, 1.0, 1.8, 1.65, 0.85)
    np.testing.assert_allclose(model.predict(np.array([60.0]), np.array([1.2]))[0], expected)


# --- bad input ---------------------------------------------------------------------------


def _sidecar(root):
    return json.loads(_files(root)[0].with_name("sub-01_asl.json").read_text())


def _change(root, **changes):
    sidecar = _sidecar(root)
    for key, value in changes.items():
        if value is None:
            sidecar.pop(key, None)
        else:
            sidecar[key] = value
    return sidecar


@pytest.mark.parametrize("changes, file, field", [
    ({"PostLabelingDelay": [1.8, 1.8, 1.8]}, "sub-01_asl.json", "PostLabelingDelay"),
    ({"RepetitionTimePreparation": 0}, "sub-01_asl.json", "RepetitionTimePreparation"),
    ({"RepetitionTimePreparation": None}, "sub-01_asl.json", "RepetitionTimePreparation"),
    ({"LabelingDuration": None}, "sub-01_asl.json", "LabelingDuration"),
    ({"PostLabelingDelay": 1800}, "sub-01_asl.json", "PostLabelingDelay"),
    ({"ArterialSpinLabelingType": "PASL"}, "sub-01_asl.json", "BolusCutOffFlag"),
    ({"ArterialSpinLabelingType": "PASL", "BolusCutOffFlag": True},
     "sub-01_asl.json", "BolusCutOffDelayTime"),
    ({"M0Type": "Absent", "BackgroundSuppression": True}, "sub-01_asl.json", "M0Type"),
    ({"M0Type": "Estimate"}, "sub-01_asl.json", "M0Estimate"),
    ({"M0Type": "Included"}, "sub-01_asl.json", "M0Type"),
    ({"BackgroundSuppression": None}, "sub-01_asl.json", "BackgroundSuppression"),
])
def test_bad_metadata_names_file_and_field(phantoms, changes, file, field):
    root = phantoms["pcasl"]
    with pytest.raises(MetadataError, match=rf"{file}: field '{field}'"):
        _metadata(root, sidecar=_change(root, **changes))


def test_aslcontext_of_the_wrong_length_is_refused(phantoms):
    root = phantoms["pcasl"]
    types = context.read_aslcontext(_files(root)[1])
    with pytest.raises(MetadataError, match=r"sub-01_aslcontext.tsv: field 'volume_type' "
                                            r"lists 15 volumes but .* has 16"):
        _metadata(root, volume_types=types[:-1])
    with pytest.raises(MetadataError, match=r"aslcontext.tsv: field 'volume_type'.*control"):
        _metadata(root, volume_types=("control",) * 16)


def test_m0_of_another_shape_is_refused(phantoms):
    root = phantoms["pcasl"]
    with pytest.raises(MetadataError, match=r"sub-01_m0scan.nii.gz: the M0 image has shape"):
        _metadata(root, m0_shape=(10, 10, 4, 2))


def test_missing_background_suppression_pulses_asks_for_them(phantoms):
    root = phantoms["pasl"]
    sidecar = _change(root, BackgroundSuppressionNumberPulses=None)
    meta = _metadata(root, sidecar=sidecar)
    with pytest.raises(MetadataError, match="'BackgroundSuppressionNumberPulses'"):
        meta.efficiency()
    assert meta.efficiency(0.8) == (0.8, "command line (--labeling-efficiency)")


def test_siemens_field_strength_maps_to_3t(phantoms):
    root = phantoms["pcasl"]
    assert _metadata(root, sidecar=_change(root, MagneticFieldStrength=2.89)).t1_blood() == 1.65
    with pytest.raises(MetadataError, match="'MagneticFieldStrength' is 7 T"):
        _metadata(root, sidecar=_change(root, MagneticFieldStrength=7)).t1_blood()
