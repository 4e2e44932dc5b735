"""Input fields shared by the DSC interfaces, declared once (mixins of their input specs).

Every DSC step after the signal conversion reads the run's ΔR2* and brain mask
(:class:`DeltaR2StarInputSpec`), most also the AIF table (:class:`CurvesInputSpec`), and
those that write CBV or CBF the scaling to mL/100 g (:class:`ScalingInputSpec`) with the
relaxivities of the run's field (:class:`RelaxivityInputSpec`).
"""

from nipype.interfaces.base import BaseInterfaceInputSpec, File, traits


class RelaxivityInputSpec(BaseInterfaceInputSpec):
    """The relaxivities of the run's field, which convert ΔR2* to concentration."""

    relaxivity = traits.Dict(mandatory=True, desc="relaxivities of the run's field "
                                                  "(dsc.relaxivity.Relaxivities.sidecar())")


class DeltaR2StarInputSpec(BaseInterfaceInputSpec):
    """ΔR2*(t) of a run (SignalToDeltaR2Star) and the brain mask on its grid."""

    delta_r2star = File(exists=True, mandatory=True,
                        desc="ΔR2* (s^-1), 4-D, from the first baseline frame on")
    brain_mask = File(exists=True, mandatory=True, desc="brain mask on the series grid")


class CurvesInputSpec(DeltaR2StarInputSpec):
    """ΔR2*(t) and brain mask, with the arterial input function."""

    aif_tsv = File(exists=True, mandatory=True, desc="AIF table: time, delta_r2star, "
                                                     "concentration")


class ScalingInputSpec(RelaxivityInputSpec):
    """The scaling of CBV and CBF to mL/100 g: ``100 kH/ρ`` (Rempp et al. 1994)."""

    kh = traits.Float(mandatory=True, desc="haematocrit correction kH")
    rho = traits.Float(mandatory=True, desc="brain density, g/mL")
    scaled = traits.Bool(True, usedefault=True,
                         desc="apply kH/rho (mL/100 g, mL/100 g/min)")
