"""DSC-MRI numeric core: tracer kinetics, relaxivity and quantification on arrays."""
