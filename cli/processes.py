"""Child processes (prediction pipeline, distributed launcher): tied to their parent, described when they end."""
import os

_PR_SET_PDEATHSIG = 1


def process_alive(pid):
    """Whether a process `pid` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def set_parent_death_signal(sig=None):
    """Have the kernel send `sig` (SIGTERM) to this process when its parent dies (Linux), so that
    no child outlives a killed run. Returns False where unsupported."""
    import ctypes
    import signal

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig or signal.SIGTERM) == 0
    except (OSError, AttributeError):
        return False


def describe_exit(returncode):
    """'exited with status 3' or 'killed by SIGKILL' for a child's return code."""
    import signal

    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"
