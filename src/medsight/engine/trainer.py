"""The one training loop for every task.

Example::

    trainer = Trainer(task, config.train, run_dir)      # seeds everything: build the model after this
    model = task.build_model()
    result = trainer.fit(model, train_batches, val_loader)   # resumes from run_dir/checkpoints/last.pt

How it runs:

* **Budget.** Epochs of ``iterations_per_epoch`` batches drawn from one persistent iterator over
  ``train_data`` (re-created when exhausted), until ``epochs``, ``max_iterations`` or ``time_budget``
  is reached (first wins; none set: 50 epochs). The time budget is checked between epochs.
* **Optimisation.** ``training_step`` returns one loss per optimiser (``StepOutput.losses``, keyed by
  :class:`~medsight.engine.contract.OptimizerSpec` name). For each, the engine takes the gradients of
  that loss with respect to that optimiser's parameters (all losses first, then all steps), clips their
  norm (``clip_norm``: ``train.grad_clip``, 12 as in nnU-Net, by default) and steps; an optimiser whose
  gradient norm is not finite skips the step, counted in ``skipped_steps``. Empty losses: the task has
  stepped itself. Schedulers step every iteration; a :class:`~medsight.engine.schedule.ProgressLR`
  gets the run progress first.
* **Validation** runs every ``val_every`` epochs and at the last one, on rank 0 only, in eval mode under
  ``torch.inference_mode()`` (and bf16 autocast on CUDA when ``amp``). ``task.monitor`` picks
  ``best.pt``; ``early_stopping_patience`` counts validation rounds without improvement. Without
  validation data, ``best.pt`` is the final model.
* **Checkpoints.** ``last.pt`` after every epoch, ``best.pt`` on improvement, both atomic. A killed run
  resumes from ``last.pt`` with the same epoch, step, best metric, elapsed time, optimiser, scheduler
  and RNG states (the work of an unfinished epoch is redone). Under DDP other ranks re-seed their data
  streams from (seed, rank, epoch) on resume.
* **Logs.** One line per epoch in ``metrics.jsonl`` (epoch, step, train_loss, the task's logs, validation
  metrics, lr, elapsed, data_wait_fraction, ...), optional TensorBoard / MLflow, a progress bar on a TTY.
* **DDP.** Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank's data is seeded
  differently and rank 0's decisions (elapsed time, best metric, stop) are broadcast after each epoch.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    LoopState,
    apply_model_state,
    check_weights_only_safe,
    copy_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from medsight.engine.contract import DEFAULT_GRAD_CLIP, OptimizerSpec, StepContext, TrainableTask
from medsight.engine.device import autocast_factory, configure_threads, move_to_device, resolve_device
from medsight.engine.distributed import (
    barrier,
    broadcast_object,
    cleanup_distributed,
    dist_info,
    setup_distributed,
    unwrap_model,
    wrap_model,
)
from medsight.engine.loggers import JsonlLogger, Logger, build_loggers
from medsight.engine.progress import ProgressBar
from medsight.engine.schedule import Budget
from medsight.engine.seed import derive_seed, get_rng_state, seed_everything, set_rng_state
from medsight.engine.stream import BatchStream, EpochMeter
from medsight.errors import ConfigError, RunError

GRAD_CLIP = DEFAULT_GRAD_CLIP
Optimizers = list[OptimizerSpec]


class Callback(Protocol):
    """Called on every rank after each epoch (after the checkpoint is written).

    Set ``trainer.should_stop = True`` to end the run (rank 0's value is what counts).
    """

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns."""

    best_metric: float | None
    best_epoch: int | None
    epochs: int  # completed epochs, resumed sessions included
    iterations: int
    wall_time: float  # training seconds, resumed sessions included
    stopped_reason: str  # 'epochs', 'max_iterations', 'time_budget', 'early_stopping' or 'callback'
    resumed: bool = False
    last_metrics: dict[str, Any] = field(default_factory=dict)


class _Clock:
    """Wall-clock training time that continues from a saved value."""

    def __init__(self, base: float = 0.0) -> None:
        self.reset(base)

    def reset(self, base: float) -> None:
        self.base, self.t0 = base, time.perf_counter()

    def now(self) -> float:
        return self.base + time.perf_counter() - self.t0


class Trainer:
    """Trains any :class:`~medsight.engine.contract.TrainableTask`; see the module docstring."""

    def __init__(
        self,
        task: TrainableTask,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        extra_state: dict[str, Any] | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
    ) -> None:
        """Check the config, pick the device and threads, and seed everything from ``config.seed``.

        Args:
            extra_state: saved in every checkpoint (tensors, numbers, strings, lists, dicts only).
            progress: force the progress bar on or off; None shows it on a TTY when config.progress.
        """
        if config.val_every < 1:
            raise ConfigError(f"train.val_every: expected >= 1, got {config.val_every}")
        if task.monitor_mode not in ("max", "min"):
            raise ConfigError(
                f"task {task.name}: monitor_mode must be 'max' or 'min', got {task.monitor_mode!r}"
            )
        self.task, self.config, self.run_dir = task, config, Path(run_dir)
        self.extra_state = dict(extra_state or {})
        check_weights_only_safe(self.extra_state)
        self.callbacks, self.progress = list(callbacks), progress
        self.budget = Budget.from_config(config)
        self.dist = dist_info()
        self.device = resolve_device(config.device, self.dist.local_rank)
        self.autocast = autocast_factory(self.device, config.amp)
        self.threads = configure_threads(self.dist.world_size)
        seed_everything(config.seed, config.deterministic)  # same on every rank: same initial weights
        self.state, self.should_stop = LoopState(), False
        self._clock, self._record, self._improved = _Clock(), {}, False

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    def fit(
        self,
        model: nn.Module,
        train_data: Iterable[Any],
        val_data: Iterable[Any] | None = None,
        resume: bool = True,
    ) -> FitResult:
        """Train ``model`` in place until the budget is spent; resume from ``last.pt`` when ``resume``."""
        owns_group = setup_distributed(device=self.config.device)
        try:
            return self._fit(model, train_data, val_data, resume)
        finally:
            if owns_group:
                cleanup_distributed()

    def _fit(
        self, model: nn.Module, train_data: Iterable[Any], val_data: Iterable[Any] | None, resume: bool
    ) -> FitResult:
        model, opt, resumed = self._prepare(model, resume)
        stream, self._clock = BatchStream(train_data), _Clock(self.state.elapsed)
        loggers, bar = self._open_outputs(resumed)
        try:
            while (reason := self._stop_reason()) is None:
                logs = self._train_epoch(model, opt, stream, bar)
                logs.update(self._maybe_validate(model, val_data))
                self._end_epoch(model, opt, logs, loggers, bar)
        finally:
            bar.close()
            for logger in loggers:
                logger.close()
        return self._finish(reason, resumed, has_val=val_data is not None)

    def _train_epoch(self, model: nn.Module, opt: Optimizers, stream: BatchStream, bar: ProgressBar) -> dict:
        model.train()
        st, meter = self.state, EpochMeter()
        start_step, self._epoch_start = st.step, st.elapsed
        for _ in range(self.budget.iterations_in_epoch(st.step)):
            t0 = time.perf_counter()
            batch = next(stream)
            meter.wait += time.perf_counter() - t0
            progress = self.budget.progress(st.step, self._elapsed(start_step))
            ctx = StepContext(
                st.epoch, st.step, self.device, opt, self.autocast, *self._ranks(), progress=progress
            )
            out = self.task.training_step(model, move_to_device(batch, self.device), ctx)
            ok = self._optimise(opt, out.losses)
            st.step += 1
            self._schedule(opt, self._elapsed(start_step))
            loss = sum(out.losses.values()) if out.losses and ok else None
            meter.add(loss, out.logs, skipped=not ok)
            bar.update(1, **self._bar_postfix(loss) if bar.bar is not None else {})
        st.epoch += 1
        return self._close_epoch(meter, st.step - start_step)

    def _elapsed(self, epoch_start_step: int) -> float:
        """Training seconds so far, estimated within an epoch from the mean time per iteration."""
        st = self.state
        return st.elapsed + (st.step - epoch_start_step) * (st.sec_per_iter or 0.0)

    # -- steps ---------------------------------------------------------------------------------
    def _ranks(self) -> tuple[int, int]:
        return self.dist.rank, self.dist.world_size

    def _optimise(self, opt: Optimizers, losses: dict[str, torch.Tensor]) -> bool:
        """Gradients of each optimiser's loss for its own parameters (all before any step), clipped,
        then the steps; False when some optimiser's gradient norm was not finite (its step skipped)."""
        by_name = {spec.name: spec for spec in opt}
        unknown = sorted(set(losses) - set(by_name))
        if unknown:
            raise RunError(
                f"task {self.task.name}: training_step returned losses {unknown} for no configured optimiser "
                f"(configured: {sorted(by_name) or 'none'}); return one OptimizerSpec per loss "
                "(e.g. medsight.engine.build_optimizer) or empty losses when the task steps itself"
            )
        names = list(losses)
        grads = [self._gradients(opt, by_name[n], losses[n], i < len(names) - 1) for i, n in enumerate(names)]
        ok = True
        for name, grad in zip(names, grads, strict=True):
            spec = by_name[name]
            spec.optimizer.zero_grad(set_to_none=True)
            for p, g in zip(spec.parameters, grad, strict=True):
                p.grad = g
            if self._clip(spec):
                spec.optimizer.step()
            else:
                ok = False
            spec.optimizer.zero_grad(set_to_none=True)
        return ok

    @staticmethod
    def _gradients(
        opt: Optimizers, spec: OptimizerSpec, loss: torch.Tensor, retain: bool
    ) -> list[torch.Tensor | None]:
        """The gradients of ``loss`` for ``spec``'s parameters (``backward``, so DDP reduces them)."""
        for other in opt:
            other.optimizer.zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain)
        return [p.grad for p in spec.parameters]

    @staticmethod
    def _clip(spec: OptimizerSpec) -> bool:
        """Clip the gradient norm of one optimiser's parameters; False when it is not finite."""
        params = [p for p in spec.parameters if p.grad is not None]
        if not params:
            return True
        max_norm = spec.clip_norm if spec.clip_norm is not None else float("inf")
        return bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(params, max_norm)))

    def _schedule(self, opt: Optimizers, elapsed: float) -> None:
        """Step every scheduler; a ProgressLR first gets ``budget.progress(step, elapsed)``."""
        progress = self.budget.progress(self.state.step, elapsed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for sched in (s for spec in opt for s in spec.schedulers):
                if hasattr(sched, "set_progress"):
                    sched.set_progress(progress)
                sched.step()

    def _close_epoch(self, meter: EpochMeter, iterations: int) -> dict[str, Any]:
        if iterations and meter.skipped == iterations:
            raise RunError(
                f"task {self.task.name}: every step of epoch {self.state.epoch} had a non-finite loss or "
                "gradient; lower train.lr or check the data for NaNs"
            )
        logs = meter.summary()
        self.state.sec_per_iter = (
            logs["train_seconds"] / iterations if iterations else self.state.sec_per_iter
        )
        self.state.elapsed = self._clock.now()
        return logs

    def _bar_postfix(self, loss: torch.Tensor | None) -> dict[str, Any]:
        post: dict[str, Any] = {"epoch": self.state.epoch + 1}
        if loss is not None:
            post["loss"] = float(loss.detach())
        if self.state.best_metric is not None:
            post[self.task.monitor] = self.state.best_metric
        return post

    # -- validation ----------------------------------------------------------------------------
    def _maybe_validate(self, model: nn.Module, val_data: Iterable[Any] | None) -> dict[str, float]:
        st = self.state
        if val_data is None or not self.dist.is_main:
            return {}
        final = self.budget.stop_reason(st.epoch, st.step, st.elapsed, st.epoch_seconds) is not None
        if st.epoch % self.config.val_every and not final:
            return {}
        module = unwrap_model(model)
        module.eval()
        with torch.inference_mode(), self.autocast():
            outputs = [self.task.validation_step(module, move_to_device(b, self.device)) for b in val_data]
        module.train()
        metrics = {k: float(v) for k, v in self.task.aggregate_validation(outputs).items()}
        self._update_best(metrics)
        return metrics

    def _update_best(self, metrics: dict[str, float]) -> None:
        st, monitor = self.state, self.task.monitor
        if monitor not in metrics:
            raise RunError(
                f"task {self.task.name}: monitor {monitor!r} is not among the validation metrics "
                f"{sorted(metrics)}"
            )
        self._improved = st.is_improvement(metrics[monitor], self.task.monitor_mode)
        if self._improved:
            st.best_metric, st.best_epoch, st.bad_rounds = metrics[monitor], st.epoch, 0
        else:
            st.bad_rounds += 1

    # -- epoch end, stop, finish ---------------------------------------------------------------
    def _end_epoch(
        self, model: nn.Module, opt: Optimizers, logs: dict, loggers: list[Logger], bar: ProgressBar
    ) -> None:
        st = self.state
        st.elapsed = self._clock.now()
        st.epoch_seconds = st.elapsed - self._epoch_start
        lr = opt[0].optimizer.param_groups[0]["lr"] if opt else None
        self._record = {
            "epoch": st.epoch,
            "step": st.step,
            **logs,
            "lr": lr,
            "elapsed": st.elapsed,
            "epoch_seconds": st.epoch_seconds,
            "best_metric": st.best_metric,
        }
        if self.dist.is_main:
            for logger in loggers:
                logger.log(self._record)
            self._save(model, opt)
        for callback in self.callbacks:
            callback.on_epoch_end(self, self._record)
        self.state, self.should_stop = broadcast_object((st, self.should_stop), self.device)
        self._clock.reset(self.state.elapsed)
        bar.set_total(self.budget.estimated_total_iterations(self.state.step, self.state.elapsed))

    def _stop_reason(self) -> str | None:
        st, patience = self.state, self.config.early_stopping_patience
        reason = self.budget.stop_reason(st.epoch, st.step, st.elapsed, st.epoch_seconds)
        if reason is None and patience is not None and st.bad_rounds >= patience:
            reason = "early_stopping"
        if reason is None and self.should_stop:
            reason = "callback"
        return reason

    def _finish(self, reason: str, resumed: bool, has_val: bool) -> FitResult:
        if self.dist.is_main and not has_val and self.last_checkpoint.is_file():
            copy_checkpoint(self.last_checkpoint, self.best_checkpoint)
        barrier()
        st = self.state
        return FitResult(
            st.best_metric, st.best_epoch, st.epoch, st.step, st.elapsed, reason, resumed, dict(self._record)
        )

    # -- set-up and checkpoints ------------------------------------------------------------------
    def _prepare(self, model: nn.Module, resume: bool) -> tuple[nn.Module, Optimizers, bool]:
        """Seed the data streams, move the model, build optimisers, resume or start over, wrap in DDP."""
        cfg, rank = self.config, self.dist.rank
        seed_everything(derive_seed(cfg.seed, rank), cfg.deterministic)
        model.to(self.device)
        opt = self.task.configure_optimizers(model) or []
        self.state, self.should_stop, self._record = LoopState(), False, {}
        resumed = resume and self.last_checkpoint.is_file()
        if resumed:
            self._restore(model, opt)
        elif self.dist.is_main:
            for stale in (self.last_checkpoint, self.best_checkpoint, self.run_dir / "metrics.jsonl"):
                stale.unlink(missing_ok=True)
        barrier()
        return wrap_model(model, self.device), opt, resumed

    def _restore(self, model: nn.Module, opt: Optimizers) -> None:
        path = self.last_checkpoint
        try:
            ckpt = load_checkpoint(path)
        except RunError as exc:
            raise RunError(f"{exc}; pass resume=False to start over") from exc
        for key, expected in (("task", self.task.name), ("monitor", self.task.monitor)):
            if ckpt.get(key) != expected:
                raise RunError(
                    f"{path}: saved {key} {ckpt.get(key)!r} differs from {expected!r}; "
                    "pass resume=False to start over"
                )
        apply_model_state(model, ckpt["model"], path)
        for kind, objs in (("optimizers", _optimizers(opt)), ("schedulers", _schedulers(opt))):
            saved = ckpt.get(kind, [])
            if len(saved) != len(objs):
                raise RunError(f"{path}: holds {len(saved)} {kind}, the task configured {len(objs)}")
            for obj, obj_state in zip(objs, saved, strict=True):
                obj.load_state_dict(obj_state)
        self.state = LoopState.from_dict(ckpt["loop"])
        if self.dist.is_main:
            set_rng_state(ckpt["rng"])
        else:
            seed_everything(
                derive_seed(self.config.seed, self.dist.rank, self.state.epoch), self.config.deterministic
            )
        if not self.extra_state:
            self.extra_state = dict(ckpt.get("extra_state") or {})

    def _save(self, model: nn.Module, opt: Optimizers) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": unwrap_model(model).state_dict(),
            "optimizers": [o.state_dict() for o in _optimizers(opt)],
            "schedulers": [s.state_dict() for s in _schedulers(opt)],
            "loop": self.state.to_dict(),
            "rng": get_rng_state(),
            "task": self.task.name,
            "monitor": self.task.monitor,
            "monitor_mode": self.task.monitor_mode,
            "config": self.config.model_dump(mode="json"),
            "extra_state": self.extra_state,
            "torch_version": str(torch.__version__),
        }
        save_checkpoint(self.last_checkpoint, state)
        if self._improved:
            copy_checkpoint(self.last_checkpoint, self.best_checkpoint)
        self._improved = False

    def _open_outputs(self, resumed: bool) -> tuple[list[Logger], ProgressBar]:
        main = self.dist.is_main
        loggers = build_loggers(self.config, self.run_dir) if main else []
        if main and resumed:
            next(lg for lg in loggers if isinstance(lg, JsonlLogger)).truncate_after(self.state.epoch)
        show = main and ProgressBar.wanted(self.config.progress, self.progress)
        total = self.budget.estimated_total_iterations(self.state.step, self.state.elapsed)
        return loggers, ProgressBar(show, total, initial=self.state.step)


def _optimizers(opt: Optimizers) -> list[torch.optim.Optimizer]:
    return [spec.optimizer for spec in opt]


def _schedulers(opt: Optimizers) -> list[torch.optim.lr_scheduler.LRScheduler]:
    return [s for spec in opt for s in spec.schedulers]
