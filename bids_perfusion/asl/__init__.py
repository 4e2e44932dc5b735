"""ASL numeric core: the kinetic model of the label and CBF quantification on arrays."""
