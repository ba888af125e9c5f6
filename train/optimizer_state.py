"""Optimizer state saved with every checkpoint and restored by --load-epoch.

Without it a resumed Adam/NADAM run starts its moments from zero while its update counter (and so
its bias correction) says it is deep into training: the first steps after a resume are several
times larger than in an uninterrupted run. With it, 1 epoch + resume 1 epoch ends where 2
uninterrupted epochs end.

Beside `PREFIX-%04d.params` (no pickle anywhere: a checkpoint may come from anyone):
- `PREFIX-%04d.optimizer.nd`: MXNet's NDArray file (`mx.nd.save`) of the state arrays, keyed
  `<parameter>:<slot>`; slot `s` is a lone array (SGD/NAG momentum), `s.0`/`s.1` the two arrays
  of Adam/NADAM (mean, variance), `s.0.1` and so on for the multi-precision pairs of float16 runs;
- `PREFIX-%04d.optimizer.json`: optimizer name, update count, NADAM's momentum schedule
  `m_schedule` (a Python float), the epoch, and the SHA-256 of the .params file it belongs to.

The state lives in the Module's updater (one device, or several without a kvstore updater), in
the kvstore's updater (`local`/`device` kvstores that update on the kvstore), or on the parameter
servers (`dist_*`): there it cannot be read and is not saved (a warning says so).
"""
import hashlib
import json
import logging
import os

import mxnet as mx

from cli.runner import UserError
from train.checkpoint import load_named_arrays, optimizer_state_paths

log = logging.getLogger(__name__)

FORMAT = "cdiscount-optimizer-state/1"
ROOT_SLOT = "s"


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _updater(module):
    """The Python updater holding the states, or None when they live on parameter servers."""
    if module._update_on_kvstore:
        return getattr(module._kvstore, "_updater", None)
    return module._updater


def readable(module):
    return _updater(module) is not None


def _leaves(state, slot=ROOT_SLOT):
    """(slot, NDArray) of a state: None, an NDArray, or tuples of them."""
    if state is None:
        return
    if isinstance(state, mx.nd.NDArray):
        yield slot, state
    elif isinstance(state, (tuple, list)):
        for i, part in enumerate(state):
            yield from _leaves(part, f"{slot}.{i}")
    else:
        raise TypeError(f"optimizer state of type {type(state).__name__}")


def _keys(module):
    """(updater key, parameter name, that key's weight) of every trained parameter."""
    group = module._exec_group
    devices = len(module._context)
    for i, name in enumerate(group.param_names):
        if module._update_on_kvstore:  # Module's kvstore keys are the parameter names
            yield name, name, group.param_arrays[i][0]
        else:  # one state per device copy, as Module's _update_params numbers them
            for k, weight in enumerate(group.param_arrays[i]):
                yield i * devices + k, name, weight


def write_state(module, optimizer_name, epoch, params_path, arrays_path, json_path):
    """Write the state of `module`'s optimizer (to temporary names: the caller renames them)."""
    updater, optimizer = _updater(module), module._optimizer
    arrays, saved_names = {}, set()
    for key, name, _ in _keys(module):
        if key in updater.states and name not in saved_names:  # device copies are equal: the first
            saved_names.add(name)
            for slot, value in _leaves(updater.states[key]):
                arrays[f"{name}:{slot}"] = value.as_in_context(mx.cpu())
    counts = {c for per_device in optimizer._all_index_update_counts.values() for c in per_device.values()}
    if counts - {optimizer.num_update}:  # Module updates every parameter once per batch
        raise ValueError(f"uneven update counts {sorted(counts)}")
    description = {"format": FORMAT, "optimizer": optimizer_name, "epoch": epoch,
                   "num_update": optimizer.num_update, "params_sha256": file_sha256(params_path)}
    if hasattr(optimizer, "m_schedule"):
        description["m_schedule"] = optimizer.m_schedule
    mx.nd.save(arrays_path, arrays)
    with open(json_path, "w") as fh:
        json.dump(description, fh, indent=1)


def read_state(params_path, optimizer_name):
    """(description, arrays) saved with `params_path` for `optimizer_name`, or None (with a
    warning saying why) when the resumed stage must start a fresh optimizer."""
    arrays_path, json_path = optimizer_state_paths(params_path)
    fresh = f"resuming with a fresh {optimizer_name} optimizer (update counter 0, as the original did)"
    if not (os.path.exists(arrays_path) and os.path.exists(json_path)):
        log.warning("%s: no saved optimizer state beside this checkpoint (written before states were "
                    "saved, or by the original solution); %s", params_path, fresh)
        return None
    try:
        with open(json_path) as fh:
            description = json.load(fh)
        if not isinstance(description, dict) or description.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} description")
        int(description["num_update"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{json_path}: unreadable optimizer state ({exc}); delete it and its .nd file "
                        "to resume with a fresh optimizer") from None
    if description.get("optimizer") != optimizer_name:
        log.warning("%s: the saved state is of %s, this stage uses %s; %s", json_path,
                    description.get("optimizer"), optimizer_name, fresh)
        return None
    if description.get("params_sha256") != file_sha256(params_path):
        log.warning("%s: the saved state belongs to another %s; %s", json_path, params_path, fresh)
        return None
    arrays = load_named_arrays(arrays_path, "optimizer state", "optimizer states",
                               hint=f"; delete it and {os.path.basename(json_path)} to resume with a fresh optimizer")
    return description, arrays


def _filled_states(module, arrays):
    """{updater key: state} built as the optimizer builds them, filled with the saved arrays;
    None if the saved arrays do not fit (other momentum, dtype, network)."""
    optimizer, states, used = module._optimizer, {}, set()
    for key, name, weight in _keys(module):
        state = optimizer.create_state_multi_precision(key, weight)
        for slot, value in _leaves(state):
            saved = arrays.get(f"{name}:{slot}")
            if saved is None or saved.shape != value.shape or saved.dtype != value.dtype:
                log.warning("saved optimizer state %s:%s does not fit (%s, the optimizer needs %s %s)", name,
                            slot, "absent" if saved is None else f"{saved.shape} {saved.dtype}", value.shape,
                            value.dtype)
                return None
            saved.copyto(value)
            used.add(f"{name}:{slot}")
        states[key] = state
    unused = sorted(set(arrays) - used)
    if unused:
        log.warning("saved optimizer state has slots this network does not train: %s", ", ".join(unused[:5]))
        return None
    return states


def restore_state(module, description, arrays):
    """Put the saved state into `module`'s freshly created optimizer; False (and nothing changed)
    if it does not fit."""
    states = _filled_states(module, arrays)
    if states is None:
        return False
    updater, optimizer = _updater(module), module._optimizer
    updater.states.update(states)
    # on a kvstore updater the states move to the kvstore's device at their first update
    updater.states_synced.update(dict.fromkeys(states, not module._update_on_kvstore))
    count = int(description["num_update"])
    optimizer.begin_num_update = optimizer.num_update = count  # every parameter's count starts here
    for per_device in optimizer._all_index_update_counts.values():
        per_device.clear()
    if "m_schedule" in description and hasattr(optimizer, "m_schedule"):
        optimizer.m_schedule = float(description["m_schedule"])
    if optimizer.lr_scheduler is not None:  # a constant lr (predict.fuse_net) has none
        optimizer.lr_scheduler.begin_update = count
    log.info("restored the %s optimizer state of epoch %s: %d arrays, update counter %d",
             description["optimizer"], description.get("epoch"), len(arrays), count)
    return True
