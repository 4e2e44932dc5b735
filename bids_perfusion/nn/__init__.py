"""Deep-learning models and their training: torch only, no nipype, no file layout.

- :mod:`~bids_perfusion.nn.device`: ``--device auto|cpu|cuda``;
- :mod:`~bids_perfusion.nn.weights`: safetensors weights with a JSON model card, checked
  against the card's sha256 on load;
- :mod:`~bids_perfusion.nn.training`: subject-level split, seeding and a generic trainer
  (Adam, progress bars, loss log, best checkpoint on validation, mixed precision on CUDA);
- :mod:`~bids_perfusion.nn.samples`: training curves from DSC series;
- :mod:`~bids_perfusion.nn.phae`: the physics-informed autoencoder for DSC-MRI;
- :mod:`~bids_perfusion.nn.superres`: spatio-temporal super-resolution of DSC (neural
  ODE + LIIF), trained on under-sampled series (:mod:`~bids_perfusion.nn.superres_data`).

Importing this package does not import torch; its submodules do.
"""
