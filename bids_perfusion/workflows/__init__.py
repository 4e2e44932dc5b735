"""Nipype workflows: ``init_*_wf`` functions that wire interfaces; no numerics here."""
