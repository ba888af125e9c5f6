"""Files a command reads and writes: checked before any work, outputs written whole or not at all.

Every command calls `check_outputs` with all its outputs and inputs before the heavy work, and
writes each output through `atomic_outputs` (a temporary name, renamed when complete).
"""
import contextlib
import logging
import os

from cli.processes import process_alive
from cli.runner import UserError

log = logging.getLogger("cdiscount")


def check_outputs(paths, force, inputs=()):
    """Check, before any work, that every output can be written where the user asked.

    For each output: not a directory; its folder exists and is writable; it does not exist yet
    unless `force`; it is none of the `inputs` and no other output (resolved paths, so also through
    symlinks, and the same file through hard links), which `force` does not override.
    """
    paths = [p for p in paths if p]
    seen = {}
    for path in paths:
        if os.path.isdir(path):
            raise UserError(f"{path}: output is a directory; give a file name")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise UserError(f"{path}: output folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"{path}: output folder {folder} is not writable")
        for source in inputs:
            if source and same_file(path, source):
                raise UserError(f"{path}: output is also an input ({source}); choose another output name")
        key = _identity(path)
        if key in seen:
            raise UserError(f"{path}: names the same file as output {seen[key]}; give each output its own name")
        seen[key] = path
        if os.path.exists(path) and not force:
            raise UserError(f"{path}: output exists; pass --force (FORCE=1 in the scripts) to overwrite it")


def check_output_folder(folder):
    """A folder the command will fill (and make if missing): not a file, and it or its nearest
    existing parent writable; checked before any work."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{folder}: output folder is a file, not a folder")
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{folder}: cannot write into {existing}")


def _identity(path):
    """What a path finally names: (device, inode) of an existing file, else its resolved path."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.realpath(path)


def same_file(path, other):
    """Whether two paths name one file: through symlinks and hard links, or the same path to be made."""
    return _identity(path) == _identity(other)


def check_input_file(path, what="input"):
    """An input file that must exist: one line saying it is missing, or a directory."""
    if os.path.isdir(path):
        raise UserError(f"{path}: {what} is a directory, not a file")
    if not os.path.isfile(path):
        raise UserError(f"{path}: {what} file not found")


def check_input_paths(named_paths):
    """check_input_file for each (path, what) (an empty path: an optional input not given);
    returns the paths, the `inputs` of check_outputs."""
    given = [(path, what) for path, what in named_paths if path]
    for path, what in given:
        check_input_file(path, what)
    return [path for path, _ in given]


def temp_name(path, suffix=""):
    """Name an output is written under until it is complete (`suffix`: an extension some writers need)."""
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}.tmp-{os.getpid()}{suffix}")


def remove_stale_temps(path):
    """Remove temporary files of `path` left by runs that were killed (their process is gone)."""
    directory, base = os.path.split(os.path.abspath(path))
    prefix = f".{base}.tmp-"
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, name))
            log.info("removed %s, left by an interrupted run", os.path.join(directory, name))


@contextlib.contextmanager
def atomic_outputs(*paths, keep_suffix=False):
    """Yield temporary names for `paths`; rename them all into place only if the block succeeds.

    On any exception the temporary files are removed and nothing appears under the
    final names, so an interrupted or failed run never leaves a partial output.
    Temporary files of earlier runs that were killed are removed first.
    """
    temps = [temp_name(p, os.path.splitext(p)[1] if keep_suffix else "") for p in paths]
    for p in paths:
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            raise UserError(f"{p}: output directory {parent} does not exist")
    for p in paths:
        remove_stale_temps(p)
    try:
        yield temps
        for t in temps:
            if os.path.exists(t):
                with open(t, "rb+") as fh:
                    os.fsync(fh.fileno())
        for t, p in zip(temps, paths):
            os.replace(t, p)
    except BaseException as exc:
        for t in temps:
            with contextlib.suppress(FileNotFoundError):
                os.remove(t)
        renamed = _with_final_names(exc, temps, paths)
        if renamed is not None:
            raise renamed from exc
        raise


def _with_final_names(exc, temps, paths):
    """The error to show instead of `exc` when it would name a hidden temporary file (or no file),
    so that the user reads the output name they gave; None to keep `exc` as it is."""
    final = dict(zip(temps, paths))
    if isinstance(exc, OSError) and exc.errno:
        if not exc.filename:
            # a failed write (disk full) carries no file name: name the outputs being written
            return OSError(exc.errno, f"{exc.strerror} while writing it", " and ".join(paths))
        if exc.filename in final or exc.filename2 in final:
            return OSError(exc.errno, exc.strerror, final.get(exc.filename, exc.filename))
    if isinstance(exc, UserError) and any(t in str(exc) for t in temps):
        message = str(exc)
        for t, p in final.items():
            message = message.replace(t, p)
        return UserError(message)
    return None


def write_npz(path, arrays):
    """Write `arrays` ({name: array}) as an uncompressed .npz (np.load reads it, allow_pickle=False).

    np.savez leaves its archive to the garbage collector when a write fails (disk full), which then
    fails again with an unrelated "seek of closed file"; here the archive closes at once and the
    failure surfaces as that OSError."""
    import zipfile

    import numpy as np

    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
