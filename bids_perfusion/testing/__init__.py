"""Support for checking bids_perfusion, in the manner of ``numpy.testing``.

:mod:`bids_perfusion.testing.references` holds per-voxel reference implementations used
to check the vectorised cores; the test suite and the benchmarks both import them from
here. Nothing in the App itself depends on this package.
"""
