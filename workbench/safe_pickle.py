"""Opening files from elsewhere without running their code: a record or a checkpoint received from
someone else is input, and a pickle can call any function when it is loaded.

The app's own readers load only the types the app writes:

* ``history.pkl`` through :class:`RecordUnpickler`: plain containers and numbers, numpy arrays
  (rebuilt by numpy's own ``_reconstruct``, joined by ``numpy.concatenate``), torch's version
  string and the config's search spaces (:mod:`workbench.search`); anything else is refused with :class:`UntrustedFile`, before it runs;
* checkpoints with ``torch.load(weights_only=True)`` (tensors and plain containers), allowing the
  numpy types of the random generators' states (:data:`NUMPY_TYPES`).

``pickle.load`` by hand trusts the file: use it only on records you made.
"""
from __future__ import annotations

import io
import pickle

import numpy as np
import torch

from workbench.errors import ConfigError

# (module, name) a history.pkl may name: what the app writes (numpy 1 and 2 spell _reconstruct
# and scalar in different modules).
RECORD_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy", "concatenate"),
    ("torch.torch_version", "TorchVersion"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("collections", "OrderedDict"),
    # the search spaces of a config's runs entries (their constructors check their plain arguments)
    ("workbench.search", "Grid"), ("workbench.search", "Choice"), ("workbench.search", "Uniform"),
    ("workbench.search", "LogUniform"),
}) | {("numpy.dtypes", type(np.dtype(t)).__name__) for t in
      ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "uint32", "bool")}

NUMPY_TYPES = [np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct,
               np.ndarray, np.dtype, np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar,
               *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "uint32", "uint8", "bool"))]


class UntrustedFile(ConfigError):
    """A record or checkpoint that names something the app never writes; nothing of it ran."""


class RecordUnpickler(pickle.Unpickler):
    """An unpickler that builds only :data:`RECORD_GLOBALS`."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) in RECORD_GLOBALS:
            return super().find_class(module, name)
        raise UntrustedFile(
            f"{self.source} asks to load {module}.{name}, which the workbench never writes in a record: it was "
            f"not made by main.py, and opening it could run code. Nothing of it was run. If you made it and "
            f"trust it, read it by hand with pickle.load")


def load_record(file, source: str):
    """The pickled history in ``file``, refusing any type the app does not write."""
    return RecordUnpickler(file, source).load()


def load_checkpoint(data: bytes, source: str = "a checkpoint") -> dict:
    """A checkpoint's dict, loaded with ``weights_only=True`` (tensors, plain containers and the
    numpy types of the random states): a checkpoint from elsewhere runs no code."""
    try:
        with torch.serialization.safe_globals(NUMPY_TYPES):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UntrustedFile(f"{source} holds more than tensors and plain values ({first[:200]}): it was not "
                            f"written by main.py, and opening it could run code. Nothing of it was run; delete it "
                            f"to train that run again from the start") from None
