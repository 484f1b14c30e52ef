"""Where one run stands and what makes it reproducible: its state, its random streams (the seeding
block) and its checkpoint bytes.

Randomness of one run: the seed fixes, whichever process trains the run,

* the initial weights: ``seed_everything(seed)`` then the model factory (the same for every entry);
* the batch order: a CPU ``torch.Generator`` seeded with ``seed``, one permutation per epoch;
* the algorithm's own streams: the global generators are re-seeded with ``seed`` just before the
  algorithm is built, and their states travel in every checkpoint.
"""
from __future__ import annotations

import copy
import io
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from workbench.problem import Problem
from workbench.safe_pickle import load_checkpoint


@dataclass
class RunState:
    """Where one run stands; everything the loop needs to continue after a checkpoint."""

    index: int                      # position in the experiment's plan
    step: int = 0
    epoch: int = 0
    position: int = 0               # examples of the current epoch already used
    perm: torch.Tensor | None = None  # batch order of the current epoch (CPU, int64)
    elapsed: float = 0.0            # training seconds before the current session
    loss_sum: float = 0.0           # training loss accumulated since the last row
    loss_count: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.started


def seed_everything(seed: int) -> None:
    """The random streams of a run, all from its seed:

    * Python's, numpy's and torch's global generators (seeded here): the model's initial
      weights (drawn once per seed, :func:`initial_model`), dropout, anything an algorithm draws
      from the global generator;
    * the batch order: a ``torch.Generator`` of the run (``TrainingRun.batch_gen``);
    * the algorithm's own streams, from the ``seed`` it is built with (``Algorithm.seed``):
      growth's proposals, relu_prox's projections, relu_convex's and relu_gd's sampled gates,
      and newton_summary's hg batches from ``Algorithm.stream_seed("hg")`` (a batch order of its
      own: seeded with the seed itself it would repeat the training batches).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(batch_gen: torch.Generator) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(), "batch": batch_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, batch_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    batch_gen.set_state(state["batch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def initial_model(problem: Problem, seed: int) -> torch.nn.Module:
    """The seed's initial weights: built once per problem and seed, every run gets a deep copy."""
    cache = problem.__dict__.setdefault("_initial_models", {})
    if seed not in cache:
        cache.clear()  # runs are planned seed by seed: keep one seed's weights at a time
        seed_everything(seed)
        cache[seed] = problem.build_model()
    return copy.deepcopy(cache[seed])


def checkpoint_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def read_checkpoint(data: bytes, source: str = "a checkpoint") -> dict:
    """The checkpoint's dict; one from elsewhere runs no code (:func:`workbench.safe_pickle.load_checkpoint`)."""
    return load_checkpoint(data, source)
