"""Recipe of the spatio-temporal U-Net (:mod:`bids_perfusion.nn.stunet`): CBV from raw
(low-dose) DSC strips, against reference CBV maps (:mod:`.strips`)."""

from bids_perfusion.nn.recipes import register
from bids_perfusion.nn.recipes.strips import StripRecipe


@register
class StUNetRecipe(StripRecipe):
    """Spatio-temporal U-Net (CBV from raw DSC)."""

    name = "stunet"
    help = "spatio-temporal U-Net: CBV from raw (low-dose) DSC, against reference CBV maps"

    @staticmethod
    def architecture(request):
        """The module and configuration, with the encoder widths of the options."""
        from bids_perfusion.nn import stunet

        return stunet.StUNet, stunet.StUNetConfig(widths=tuple(request.options.widths))
