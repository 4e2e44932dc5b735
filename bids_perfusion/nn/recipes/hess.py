"""Recipe of the baseline of Hess et al. (2018) (:mod:`bids_perfusion.nn.hess`): the same
data and options as the stU-Net (:mod:`.strips`)."""

from bids_perfusion.nn.recipes import register
from bids_perfusion.nn.recipes.strips import StripRecipe


@register
class HessRecipe(StripRecipe):
    """Baseline of Hess et al. (2018): sequence encoder and spatial correlation module."""

    name = "hess"
    help = "baseline of Hess et al. 2018 (same data and options as stunet)"
    description = "uses the reference, dose and strip options of stunet"

    @staticmethod
    def architecture(request):
        """The module and its default configuration."""
        from bids_perfusion.nn import hess

        return hess.Hess, hess.HessConfig()
