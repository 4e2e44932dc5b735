"""bids-perfusion: quantitative perfusion MRI (DSC and ASL) as a BIDS App."""

__version__ = "0.1.0"
