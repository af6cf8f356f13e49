"""The Ray engine: embed a file list with Ray Data over a pool of embedder actors; the driver stays the writer.

Pipeline (the layout of large batch-inference jobs such as clip-retrieval)::

    ray.data.from_items([{i, path}, ...])                       # the file list, ``files_per_task`` per block
      .map_batches(_EmbedActor, compute=ActorPoolStrategy(size=max(1, cpus - 1)), num_cpus=1)
      -> {i, result}                                            # TrackEmbedding / FileFailure objects

`RayEmbedder.embed_files` yields the results in input order, so `embedkit.collection` stores them exactly as
it stores the local engine's: one writer (the driver), the store's resume plan, hashing, failure records and
commits. Every actor loads the store's spec with ``VectorSpec.embedder`` (weights checked against the spec's
fingerprint), so the vectors are the local engine's, bit for bit.

**The actor-pool trap.** An actor per CPU reserves every CPU of a small cluster and leaves none for Ray
Data's read tasks: the pipeline hangs without an error. The pool therefore has ``max(1, cpus - 1)`` actors of
one CPU each (on 2 cores: one actor, one CPU left for reads). Each actor still runs TensorFlow on all the
cores of its node: the actors get the driver's ``OMP_NUM_THREADS`` (`actor_env`), not Ray's default of one
thread per one-CPU actor, which would also change the vectors' last bits.

**Faults.** Ray restarts a dead actor and retries its task (``task_retries`` times). A task that still fails
is dropped (``max_errored_blocks = -1``) and its files are run again one per task; a file that kills its
worker even alone becomes a `FileFailure` ("the worker died while embedding it"), which the store records
as failed: not retried forever, and retried on demand with ``--retry-failed``. Results already stored
survive a dead driver; a rerun skips them (the store's resume plan).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import EngineUnavailableError

log = logging.getLogger("embedkit")

INSTALL_HINT = "pip install 'embedkit[ray]'"
#: files per Ray task: enough that decoding overlaps the network inside an actor, few enough to balance.
FILES_PER_TASK = 16
#: retries of a task whose actor died, before its files are run one per task.
TASK_RETRIES = 1


def require_ray() -> None:
    """Raise `EngineUnavailableError` (one line, with the way out) when Ray Data is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineUnavailableError(f"--engine ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None


def actor_pool_size(cpus: float) -> int:
    """Embedder actors for a cluster with ``cpus`` CPUs: one fewer than the CPUs (at least one), so that Ray
    Data's read tasks always find a CPU (an actor per CPU hangs small clusters)."""
    return max(1, int(cpus) - 1)


def connect(address: str | None = None) -> bool:
    """Attach to the Ray cluster at ``address`` (None: start one on this machine) unless Ray is already
    initialised in this process. Returns True when this call started or joined it."""
    require_ray()
    import ray

    if ray.is_initialized():
        return False
    # log_to_driver=False: Ray prints worker and raylet lines to stdout, which would break --json output;
    # failures reach the user through the store's failure records instead.
    kw: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True, "log_to_driver": False}
    for attempt in (1, 2):  # Ray gives its raylet a fixed 30 s to start: an overloaded machine can miss it once
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(include_dashboard=False, **kw)
            return True
        except Exception as exc:  # noqa: BLE001 - Ray raises plain Exception for a start-up timeout
            ray.shutdown()
            if attempt == 1 and not address and "timed out during startup" in str(exc):
                continue
            where = address or "this machine"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = "check --address" if address else "is the machine overloaded? try again"
            raise EngineUnavailableError(f"cannot start or reach Ray at {where}: {first}; {hint}") from None
    return True


def _object_column(items: list) -> np.ndarray:
    """``(n,) object`` array holding ``items`` as they are (numpy would unpack sequence-like objects)."""
    col = np.empty(len(items), dtype=object)
    for k, item in enumerate(items):
        col[k] = item
    return col


class _EmbedActor:
    """A Ray Data actor: loads the spec's embedder once, embeds a batch of files per call."""

    def __init__(self, spec: Any, batch_size: int, kw: dict, fault: dict | None = None) -> None:
        t0 = time.perf_counter()
        self._cpu = time.process_time()  # CPU-seconds of this actor process (all its threads), reported per batch
        self.emb = spec.embedder(batch_size=batch_size)
        self.kw = kw
        self.fault = fault or {}
        self.done = 0
        self.init_s = time.perf_counter() - t0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..embedder import FileFailure

        paths = [str(p) for p in batch["path"]]
        self._maybe_die(paths)
        out = []
        for res in self.emb.embed_files(paths, **self.kw):
            if not res.ok:  # the exception object stays here: only its one-line message travels
                res = FileFailure(res.path, res.error)
            out.append(res)  # Ray ships the object to the driver (its own serializer: actors are trusted)
            self.done += 1
            self._maybe_die([])
        init_s, self.init_s = self.init_s, 0.0
        cpu, self._cpu = time.process_time() - self._cpu, time.process_time()
        n = max(len(out), 1)
        return {"i": np.asarray(batch["i"], np.int64), "result": _object_column(out),
                "init_s": np.full(len(out), init_s / n), "cpu_s": np.full(len(out), cpu / n)}

    def _maybe_die(self, paths: list[str]) -> None:
        """Test hook (``fault``): ``{"exit_after": N, "marker": PATH}`` kills this worker process once (mid-task),
        when it has embedded N files; ``{"crash_on": NAME}`` kills it whenever a file named NAME is in the batch."""
        f = self.fault
        if f.get("crash_on") and any(Path(p).name == f["crash_on"] for p in paths):
            os._exit(13)
        if "exit_after" in f and self.done >= int(f["exit_after"]) and not os.path.exists(f["marker"]):
            Path(f["marker"]).touch()
            os._exit(13)


def actor_env() -> dict:
    """The actors' runtime environment: this process's ``OMP_NUM_THREADS`` (empty = unset, the libraries'
    default). Ray otherwise sets ``OMP_NUM_THREADS=1`` in a one-CPU actor, and oneDNN/BLAS with another
    thread count round differently: vectors of multi-patch tracks then differ from the local engine's in
    the last bit (measured: up to 1.4e-6 on 1 h of music). Same machine, same threads, same bits."""
    return {"env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}}


def _fault_from_env() -> dict | None:
    """The test hook of `_EmbedActor._maybe_die` from ``EMBEDKIT_RAY_FAULT`` (JSON), for tests of the CLI."""
    raw = os.environ.get("EMBEDKIT_RAY_FAULT")
    return json.loads(raw) if raw else None


class RayEmbedder:
    """An embedder whose ``embed_files`` runs on Ray; every other attribute is the wrapped embedder's.

    ``emb``: the driver's embedder (an `embedkit.spec.SpecEmbedder` or `embedkit.Embedder`), which
    defines the spec the actors load. ``address``: Ray cluster (None: local). ``actors``: pool size
    (default ``max(1, cluster CPUs - 1)``). ``num_gpus``: GPUs per actor on GPU nodes.
    ``stats`` after a run: ``connect_s``, ``actor_init_s`` (model load, summed over actors), ``actor_cpu_s``
    (CPU-seconds of the actor processes, model load included), ``first_result_s``, ``actors``.
    """

    def __init__(self, emb: Any, *, address: str | None = None, actors: int | None = None,
                 files_per_task: int = FILES_PER_TASK, task_retries: int = TASK_RETRIES, num_gpus: float = 0.0,
                 fault: dict | None = None) -> None:
        from ..spec import VectorSpec

        self.embedder = emb
        self.spec = getattr(emb, "spec", None) or VectorSpec.for_embedder(emb)
        self.address = address
        self.actors = actors
        self.files_per_task = max(1, int(files_per_task))
        self.task_retries = int(task_retries)
        self.num_gpus = float(num_gpus)
        self.fault = fault if fault is not None else _fault_from_env()
        self.stats: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embedder, name)

    def embed_files(self, paths: Iterable[str | os.PathLike], *, layers: Any = None, aggregate: str = "mean",
                    excerpt_s: float | None = None, return_patches: bool = False,
                    workers: int = 2) -> Iterator[Any]:
        """One `TrackEmbedding` or `FileFailure` per path, in input order (as `Embedder.embed_files`)."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        self.embedder.layout.parse_layers(layers)  # fail fast on a bad layer list, before Ray starts
        t0 = time.perf_counter()
        connect(self.address)
        self.stats = {"connect_s": time.perf_counter() - t0, "actor_init_s": 0.0, "actor_cpu_s": 0.0,
                      "first_result_s": float("nan")}
        kw = {"layers": layers, "aggregate": aggregate, "excerpt_s": excerpt_s, "return_patches": return_patches,
              "workers": workers}
        # Ray's driver prints raylet messages ("a worker died ...") to stdout from a thread; while Ray works
        # they go to stderr instead, so that `embed --json` output stays clean.
        with contextlib.redirect_stdout(sys.stderr):
            yield from self._ordered(paths, kw)

    def _ordered(self, paths: list[str], kw: dict) -> Iterator[Any]:
        from ..embedder import FileFailure

        t0 = time.perf_counter()
        ready: dict[int, Any] = {}
        todo, next_out = list(range(len(paths))), 0
        # pass 1: files_per_task per task; pass 2: what a dead worker took with it, one file per task
        for per_task in dict.fromkeys((self.files_per_task, 1)):
            if not todo:
                break
            for i, res in self._stream(paths, todo, per_task, kw):
                if next_out == 0 and not ready and math.isnan(self.stats["first_result_s"]):
                    self.stats["first_result_s"] = time.perf_counter() - t0
                ready[i] = res
                while next_out in ready:
                    yield ready.pop(next_out)
                    next_out += 1
            todo = [i for i in todo if i >= next_out and i not in ready]
            if todo:
                log.warning("ray engine: %d file(s) lost with a dead worker; running them again one per task", len(todo))
        for i in todo:
            ready[i] = FileFailure(paths[i], f"{paths[i]}: the embedding worker died while embedding this file "
                                             f"(alone, {self.task_retries + 1} attempts); not retried: check the file, "
                                             "then rerun with --retry-failed")
        while next_out in ready:
            yield ready.pop(next_out)
            next_out += 1

    def _stream(self, paths: list[str], todo: list[int], per_task: int, kw: dict) -> Iterator[tuple[int, Any]]:
        import ray
        from ray.data import ActorPoolStrategy, DataContext

        ctx = DataContext.get_current()
        saved = (ctx.max_errored_blocks, ctx.enable_progress_bars)
        ctx.max_errored_blocks = -1  # a task that fails after its retries is dropped; embed_files re-runs its files
        ctx.enable_progress_bars = False  # the store's own progress bar reports files
        data_log = logging.getLogger("ray.data")
        level = data_log.level
        data_log.setLevel(logging.ERROR)  # "starting execution ..." lines on every run
        try:
            actors = self.actors or actor_pool_size(ray.cluster_resources().get("CPU", 1))
            remote: dict[str, Any] = {"max_task_retries": self.task_retries}
            if self.num_gpus:
                remote["num_gpus"] = self.num_gpus
            ds = ray.data.from_items([{"i": i, "path": paths[i]} for i in todo],
                                     override_num_blocks=math.ceil(len(todo) / per_task))
            # one file per task AND one task per actor at a time: a file that kills its actor takes no other
            # file's task with it (tasks queued on the same actor would die too and exhaust their retries)
            isolate = {"max_tasks_in_flight_per_actor": 1} if per_task == 1 else {}
            constructor = {"spec": self.spec, "batch_size": int(getattr(self.embedder, "batch_size", 32)), "kw": kw,
                           "fault": self.fault}
            with warnings.catch_warnings():  # max_task_retries has no named parameter yet (Ray 2.60)
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
                ds = ds.map_batches(_EmbedActor, batch_size=per_task, batch_format="numpy",
                                    compute=ActorPoolStrategy(size=actors, **isolate), num_cpus=1,
                                    fn_constructor_kwargs=constructor, runtime_env=actor_env(), **remote)
            self.stats["actors"] = actors
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                self.stats["actor_init_s"] += float(np.sum(batch["init_s"]))
                self.stats["actor_cpu_s"] += float(np.sum(batch["cpu_s"]))
                for i, res in zip(batch["i"], batch["result"]):
                    yield int(i), res
        finally:
            ctx.max_errored_blocks, ctx.enable_progress_bars = saved
            data_log.setLevel(level)


__all__ = ["FILES_PER_TASK", "INSTALL_HINT", "RayEmbedder", "actor_pool_size", "connect", "require_ray"]
