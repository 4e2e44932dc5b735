"""``--output-spaces``: the spaces maps are written in, in fMRIPrep's syntax.

A space is ``<name>[:res-<N>]``: ``run`` (the native grid of each run, the default),
``T1w`` (the grid of the subject's T1w) or ``MNI152NLin2009aSym`` (the ICBM 2009a
nonlinear symmetric template of Fonov et al., NeuroImage 2011;54:313, as nilearn ships it:
skull-stripped, 1 mm), optionally at ``res-N``, an N mm isotropic grid over the same
field of view. Outputs in a space other than ``run`` carry ``space-<name>`` (and
``res-<N>`` when it was asked for), the entities of BIDS-Derivatives.
"""

from dataclasses import dataclass

#: The native grid of each run (no ``space`` entity).
RUN = "run"
#: The subject's T1w.
T1W = "T1w"
#: The template nilearn ships (``nilearn.datasets.load_mni152_template``).
TEMPLATE = "MNI152NLin2009aSym"
#: Every space ``--output-spaces`` accepts.
SPACES = (RUN, T1W, TEMPLATE)
#: Largest ``res`` of the template, mm (coarser grids hold too few voxels to be useful).
MAX_RESOLUTION_MM = 8


@dataclass(frozen=True)
class Space:
    """One output space: ``name`` (one of :data:`SPACES`) and ``resolution`` (the ``res``
    label as given, template only, or None)."""

    name: str
    resolution: str | None = None

    @property
    def needs_t1w(self) -> bool:
        """Whether maps reach this space through the subject's T1w."""
        return self.name != RUN

    @property
    def voxel_size_mm(self) -> int:
        """The template grid spacing of this space, mm (1, the shipped grid, without
        ``res``)."""
        return int(self.resolution) if self.resolution else 1

    @property
    def entities(self) -> dict:
        """File-name entities of outputs in this space (``{}`` for ``run``)."""
        if self.name == RUN:
            return {}
        entities = {"space": self.name}
        if self.resolution:
            entities["resolution"] = self.resolution
        return entities

    def __str__(self) -> str:
        return self.name + (f":res-{self.resolution}" if self.resolution else "")


@dataclass(frozen=True)
class SpatialOptions:
    """``--output-spaces`` (values as given) and ``--normalisation`` (a setting of
    :data:`bids_perfusion.spatial.registration.NORMALISATION`), saved with every run."""

    output_spaces: tuple = (RUN,)
    normalisation: str = "full"

    @property
    def spaces(self) -> tuple["Space", ...]:
        return parse_spaces(self.output_spaces)

    @property
    def needs_t1w(self) -> bool:
        return any(space.needs_t1w for space in self.spaces)

    @property
    def needs_template(self) -> bool:
        return any(space.name == TEMPLATE for space in self.spaces)


@dataclass(frozen=True)
class Anatomy:
    """The T1w of a subject (and session) that its runs are co-registered to, with the
    brain mask given with ``--derivatives`` (``anat/*_desc-brain_mask``), or None."""

    subject: str
    session: str | None
    t1w: str
    brain_mask: str | None = None

    @property
    def name(self) -> str:
        """A node-safe identifier: ``sub_01[_ses_a]_anat``."""
        return f"sub_{self.subject}" + (f"_ses_{self.session}" if self.session else "") \
            + "_anat"


def parse_space(text: str) -> Space:
    """The :class:`Space` of one ``--output-spaces`` value (``'MNI152NLin2009aSym:res-2'``).

    Raises ValueError naming the value, what is wrong and the accepted values.
    """
    name, _, modifiers = text.partition(":")
    accepted = (f"give one or more of {RUN}, {T1W}, {TEMPLATE}, {TEMPLATE}:res-N "
                f"(N = 1..{MAX_RESOLUTION_MM} mm)")
    if name not in SPACES:
        hint = (" (this App ships only nilearn's MNI152 2009a symmetric template: nothing "
                "is downloaded)" if name.startswith(("MNI", "fs", "OASIS", "NKI")) else "")
        raise ValueError(f"--output-spaces {text}: unknown space {name!r}{hint}; {accepted}.")
    if not modifiers:
        return Space(name)
    if name != TEMPLATE:
        raise ValueError(f"--output-spaces {text}: {name} takes no modifier (its grid is "
                         f"the {'run' if name == RUN else 'T1w'}'s); {accepted}.")
    key, _, label = modifiers.partition("-")
    if key != "res" or not label.isdigit() or not 1 <= int(label) <= MAX_RESOLUTION_MM:
        raise ValueError(f"--output-spaces {text}: unknown modifier {modifiers!r}; {accepted}.")
    return Space(name, label)


def parse_spaces(values: list[str] | tuple[str, ...]) -> tuple[Space, ...]:
    """The distinct :class:`Space` of ``--output-spaces`` values, in order."""
    if not values:
        raise ValueError(f"--output-spaces: give at least one space ({RUN} is the native "
                         "grid of each run).")
    return tuple(dict.fromkeys(parse_space(value) for value in values))
