"""What goes wrong with a user's data, and the exit codes of the command-line tools.

Every error a user can fix is raised as :class:`InputDataError` (or a subclass) with a
message in one sentence or two that names the file, the problem and the fix. Raised inside
a processing node, it skips that run only; the command line reports the message as it is,
without a traceback, and exits with :data:`EXIT_SKIPPED`.
"""

#: Every requested run was processed and written.
EXIT_OK = 0
#: At least one run was skipped because of its input (the message says which and why);
#: the other runs were written.
EXIT_SKIPPED = 1
#: The command line itself is wrong (unknown option, output inside the input, ...):
#: nothing was processed.
EXIT_USAGE = 2
#: An internal error (a bug or the machine: memory, disk): please report it.
EXIT_INTERNAL = 3


class InputDataError(ValueError):
    """The data of a run cannot give a correct result; the message names file, problem, fix."""
