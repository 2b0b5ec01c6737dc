"""User-facing errors: raised for a user's mistake, printed by the CLI without a traceback.

Every message names what was wrong (file, line or id), and what to do about it.
"""


class InstructSelectError(Exception):
    """Base class for errors that are the user's to fix; the CLI prints them plainly."""


class InputError(InstructSelectError):
    """Bad input data: malformed file, missing field, unknown role or format."""


class ConfigError(InstructSelectError):
    """A setting that is missing, out of range or inconsistent with another."""


class ArtifactMismatchError(InstructSelectError):
    """A run directory holds an artifact made with different settings or inputs."""


class FolderBusyError(InstructSelectError):
    """Another live job holds the output folder's lock: one job writes a folder at a time."""


class TrainingDivergedError(InstructSelectError):
    """The loss or a weight became NaN or infinite while training: the settings cannot train."""
