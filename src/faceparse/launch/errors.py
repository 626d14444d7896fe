"""What a failed cluster launch raises: the message names the job and tells why."""


class LaunchError(RuntimeError):
    """A cluster training job failed, timed out, or could not be created; the message names it and tells why."""


class PyTorchJobError(LaunchError):
    """The PyTorchJob failed, timed out, or could not be created."""


class TrainJobError(LaunchError):
    """The TrainJob failed, timed out, or could not be created."""
