"""Build the one mmengine ``Runner`` every paper trains and evaluates with, from a composed config.

Everything is built here from ``_target_`` nodes (``hydra.utils.instantiate``) and handed to mmengine as objects:
the model, data loaders (built with mmengine's own sampler/seeding machinery), optimizer wrapper, LR schedulers,
evaluator, hooks and visualiser. The config groups it reads:

``dataset``   ``train``/``val``/``test`` dataset nodes, ``evaluator`` (list of metric nodes), optional ``collate_fn``,
              optional ``train_batch_sampler`` (a node called with ``dataset=``, ``batch_size=`` (per process) and
              ``seed=``, returning an iterable of index lists: batches composed by the sampler, e.g. mixed datasets)
``model``     the model node (it usually interpolates ``loss: ${loss}``)
``schedule``  ``lr``, ``batch_size`` (per process), ``base_batch_size``, ``autoscale_lr``, ``optimizer`` (partial:
              called with parameter groups), ``no_weight_decay``, ``decay_1d`` (also decay norms and biases),
              ``schedulers`` (list; ``_target_`` + kwargs;
              ``convert_to_iter_based``), ``by_epoch``, ``max_epochs``/``max_iters``, ``val_interval``, ``clip_grad``,
              ``accumulative_counts``, ``num_workers``
``runtime``   ``device``, ``precision`` (fp32/bf16/fp16/auto, :mod:`forge.precision`), ``checkpoint`` (interval,
              max_keep, save_best, rule), ``log_interval``,
              ``vis`` (local/tensorboard/wandb switches), ``num_vis_images``
``launcher``  ``name`` (local/torchrun/slurm), ``backend``
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch
from hydra.utils import get_class, get_method, instantiate
from mmengine.hooks import (
    DistSamplerSeedHook,
    IterTimerHook,
    LoggerHook,
    ParamSchedulerHook,
    RuntimeInfoHook,
)
from mmengine.runner import Runner
from mmengine.visualization import Visualizer
from omegaconf import DictConfig, OmegaConf

from .config import to_plain
from .distributed import get_world_size, init_distributed
from .hooks import AtomicCheckpointHook, FinalMetricsHook, PlotCurvesHook, ReseedHook, ValImageHook, WandbValHook
from .precision import AutocastTestLoop, AutocastValLoop, build_optim_wrapper, resolve_precision


class ForgeRunner(Runner):
    """mmengine ``Runner`` whose checkpoints are written to a temporary file and renamed into place, which reads a
    checkpoint file once per load, without arbitrary unpickling, and loads a paper's original checkpoint format when
    the model knows it (``forge-test checkpoint=``, ``load_from=``).

    A model opts in with ``adapt_state_dict(state) -> dict | None``: ``state`` in the model's own parameter names,
    or None when it is not a foreign format (then the file is loaded as a forge/mmengine checkpoint).
    """

    def load_checkpoint(self, filename: str, map_location="cpu", strict: bool = False,
                        revise_keys: list = [(r"^module.", "")]):  # noqa: B006 (mmengine's signature)
        """Load ``filename`` into the model and return the checkpoint (``resume`` takes the optimizer, schedulers
        and message hub from it, so the file is read once). ``map_location`` is ignored: the file is read onto the
        CPU and copied onto the model's device (optimizer state follows its parameters' device).

        Raises:
            ValueError: not a readable PyTorch checkpoint, one that needs code to unpickle, or one without weights.
            ConfigError: ``strict`` and an original-format checkpoint that does not fit the model.
        """
        from mmengine.model import is_model_wrapper
        from mmengine.runner.checkpoint import _load_checkpoint_to_model

        from .config import ConfigError
        from .inference import safe_load

        checkpoint = safe_load(filename)
        weights = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(weights, dict):
            raise ValueError(f"{filename!r} holds no state dict")
        net = self.model.module if is_model_wrapper(self.model) else self.model
        adapt = getattr(net, "adapt_state_dict", None)
        state = adapt(weights) if callable(adapt) else None
        if state is None:  # a forge/mmengine checkpoint, loaded as mmengine's Runner.load_checkpoint does
            self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
            checkpoint = _load_checkpoint_to_model(net, checkpoint, strict, revise_keys=revise_keys)
            self._has_loaded = True
            self.logger.info(f"Load checkpoint from {filename}")
            return checkpoint
        own = net.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
        shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]
        if strict and (missing or unexpected or shapes):
            raise ConfigError(f"{filename!r} was read as {type(net).__name__}'s original format but does not fit the "
                              f"model: missing {missing[:4]}, unexpected {unexpected[:4]}, shapes {shapes[:4]}")
        self.logger.info(f"Load checkpoint from {filename} (converted from {type(net).__name__}'s original format)")
        if shapes:  # load_from with another number of classes: keep those layers as initialised
            self.logger.warning(f"not loaded (shape differs from the model): {'; '.join(shapes)}")
        _load_checkpoint_to_model(net, {k: v for k, v in state.items() if k not in mismatched}, strict=strict,
                                  logger=self.logger)
        self._has_loaded = True
        return {"state_dict": state, "meta": {}}

    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        tmp_name = f".{filename}.partial"
        super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
        if self.rank == 0:
            os.replace(os.path.join(out_dir, tmp_name), os.path.join(out_dir, filename))


def scaled_lr(schedule: DictConfig, world_size: int) -> float:
    """Linear scaling rule: ``lr * (batch_size * world_size * accumulative_counts) / base_batch_size``."""
    lr = float(schedule.lr)
    if not schedule.get("autoscale_lr", True):
        return lr
    total = int(schedule.batch_size) * world_size * int(schedule.get("accumulative_counts", 1))
    return lr * total / float(schedule.get("base_batch_size", total))


def param_groups(
    model: torch.nn.Module, weight_decay: float, no_decay_keys: list[str], decay_1d: bool = False
) -> list[dict]:
    """Two parameter groups: with weight decay, and without it for 1-D tensors (norms, biases; unless ``decay_1d``,
    as in the original YOLACT / Caffe-era recipes that decay every parameter) and for named keys."""
    skip = set()
    for module_name, module in model.named_modules():
        if hasattr(module, "no_weight_decay"):
            prefix = f"{module_name}." if module_name else ""
            skip |= {prefix + name for name in module.no_weight_decay()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if (p.ndim <= 1 and not decay_1d) or name in skip or any(key in name for key in no_decay_keys):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [dict(params=decay, weight_decay=weight_decay)]
    if no_decay:
        groups.append(dict(params=no_decay, weight_decay=0.0))
    return groups


def build_schedulers(optimizer, specs, epoch_length: int) -> list:
    """LR schedulers from ``[{_target_: mmengine.optim.X, ..., convert_to_iter_based: bool}]``."""
    out = []
    for spec in specs or []:
        spec = dict(to_plain(spec))
        cls = get_class(spec.pop("_target_"))
        if spec.pop("convert_to_iter_based", False):
            out.append(cls.build_iter_from_epoch(optimizer, epoch_length=epoch_length, **spec))
        else:
            out.append(cls(optimizer, **spec))
    return out


def _collate(dataset_cfg: DictConfig):
    target = dataset_cfg.get("collate_fn")
    if target is None:
        return dict(type="default_collate")
    return get_method(target)


class BatchSamplerAdapter(torch.utils.data.Sampler):
    """A configured batch sampler as mmengine expects one: ``DistSamplerSeedHook`` sets the epoch through
    ``loader.batch_sampler.sampler.set_epoch`` (called when the configured sampler has ``set_epoch``)."""

    def __init__(self, batch_sampler) -> None:
        self.sampler = batch_sampler

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def build_dataloader(dataset, dataset_cfg: DictConfig, schedule: DictConfig, train: bool, seed: int, by_epoch: bool):
    """A DataLoader through mmengine's builder: its samplers (distributed-aware, seeded) and worker seeding; for
    training, ``dataset.train_batch_sampler`` replaces sampler and batch size when configured."""
    sampler = "DefaultSampler" if (by_epoch or not train) else "InfiniteSampler"
    # Workers are seeded by torch from the main process's RNG when their iterator starts (python, numpy and torch
    # in each worker). ReseedHook makes that RNG a function of (seed, epoch, rank), so augmentations differ per epoch
    # yet a resumed job replays them exactly; mmengine's worker_init_fn would repeat one seed every epoch.
    num_workers = int(schedule.get("num_workers", 2))
    cfg = dict(
        dataset=dataset,
        batch_size=int(schedule.batch_size if train else schedule.get("val_batch_size", schedule.batch_size)),
        num_workers=num_workers,
        persistent_workers=False,
        sampler=dict(type=sampler, shuffle=train, seed=seed),
        collate_fn=_collate(dataset_cfg),
        drop_last=bool(train and schedule.get("drop_last", False)),
    )
    node = dataset_cfg.get("train_batch_sampler") if train else None
    if node is not None:
        inner = instantiate(node, dataset=dataset, batch_size=cfg["batch_size"], seed=seed, _convert_="partial")
        cfg.update(batch_sampler=BatchSamplerAdapter(inner), batch_size=1, drop_last=False)
    return Runner.build_dataloader(cfg, seed=None)


def _visualizer(cfg: DictConfig, work_dir: str) -> dict:
    vis = cfg.runtime.get("vis", {})
    backends: list[dict[str, Any]] = []
    if vis.get("local", True):
        backends.append(dict(type="LocalVisBackend"))
    if vis.get("tensorboard", True):
        backends.append(dict(type="TensorboardVisBackend"))
    if vis.get("wandb", False):
        from .tracking import wandb_backend

        backends.append(wandb_backend(cfg, work_dir))
    return dict(type=Visualizer, vis_backends=backends)  # named by mmengine after the experiment, as the logger


def experiment_name(cfg: DictConfig) -> str:
    """``experiment_name`` with ``/`` replaced, to which mmengine appends its (rank-synchronised) timestamp.

    mmengine's logger and visualiser are process-wide singletons of that final name: a second runner built in the
    same second of one process (tests, Hydra's in-process sweeps) would write into the first one's log and
    ``vis_data``, so it gets a ``-2``, ``-3``... suffix instead.
    """
    from mmengine.logging import MMLogger

    base = str(cfg.experiment_name).replace("/", "_")
    now = time.time()
    stamps = {time.strftime("%Y%m%d_%H%M%S", time.localtime(now + d)) for d in (0, 1)}
    name, n = base, 1
    while any(MMLogger.check_instance_created(f"{name}_{stamp}") for stamp in stamps):
        n += 1
        name = f"{base}-{n}"
    return name


def run_device(cfg: DictConfig) -> str:
    """``'cuda'`` or ``'cpu'``: where the runner puts the model (``runtime.device``, auto = CUDA if available)."""
    device = cfg.runtime.get("device", "auto")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


def build_runner(cfg: DictConfig, work_dir: str, mode: str = "train") -> ForgeRunner:
    """Instantiate every object of ``cfg`` and return the runner (``mode`` is ``'train'`` or ``'test'``)."""
    if cfg.runtime.get("device", "auto") == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if cfg.runtime.get("num_threads"):
        # small models train faster on one thread than on oversubscribed cores
        torch.set_num_threads(int(cfg.runtime.num_threads))
    distributed = init_distributed(cfg.launcher.name, cfg.launcher.get("backend", "auto"))
    world_size = get_world_size()
    seed = int(cfg.seed)
    from mmengine.runner import set_random_seed

    set_random_seed(seed, deterministic=bool(cfg.runtime.get("deterministic", False)))
    schedule = cfg.schedule
    by_epoch = bool(schedule.get("by_epoch", True))

    model = instantiate(cfg.model, _convert_="partial")
    dcfg = cfg.dataset
    evaluator = [instantiate(m, _convert_="partial") for m in dcfg.get("evaluator", [])] or None
    # runtime.precision: autocast of every train/val/test step on the run's device (forge.precision)
    device_type = run_device(cfg)
    cast_dtype = resolve_precision(str(cfg.runtime.get("precision", "fp32")), device_type)
    loop_cfg = dict(dtype=cast_dtype, device_type=device_type)

    kwargs: dict[str, Any] = dict(
        model=model,
        work_dir=work_dir,
        experiment_name=experiment_name(cfg),
        launcher="pytorch" if distributed else "none",
        randomness=dict(seed=seed, deterministic=bool(cfg.runtime.get("deterministic", False))),
        env_cfg=dict(cudnn_benchmark=bool(cfg.runtime.get("cudnn_benchmark", False))),
        visualizer=_visualizer(cfg, work_dir),
        log_processor=dict(by_epoch=by_epoch, window_size=int(cfg.runtime.get("log_interval", 10))),
        default_scope="mmengine",
    )
    runner_cfg: dict[str, Any] = dict(forge_config=OmegaConf.to_yaml(cfg))
    if distributed:
        # mmengine reads the wrapper from its cfg; CPU (gloo) needs device_ids=None
        runner_cfg["model_wrapper_cfg"] = dict(
            type="MMDistributedDataParallel",
            device_ids=None if not torch.cuda.is_available() else [torch.cuda.current_device()],
            find_unused_parameters=bool(cfg.runtime.get("find_unused_parameters", False)),
        )

    ckpt = cfg.runtime.checkpoint
    save_best = ckpt.get("save_best")
    default_hooks = dict(
        runtime_info=RuntimeInfoHook(),
        timer=IterTimerHook(),
        logger=LoggerHook(interval=int(cfg.runtime.get("log_interval", 10)), log_metric_by_epoch=by_epoch),
        param_scheduler=ParamSchedulerHook(),
        checkpoint=AtomicCheckpointHook(
            interval=int(ckpt.get("interval", 1)),
            by_epoch=by_epoch,
            max_keep_ckpts=int(ckpt.get("max_keep", 3)),
            save_best=save_best if save_best and evaluator else None,
            rule=ckpt.get("rule", "greater") if save_best and evaluator else None,
            save_last=True,
        ),
        sampler_seed=DistSamplerSeedHook(),
    )
    custom_hooks: list = [ReseedHook(seed), FinalMetricsHook(), PlotCurvesHook()]
    if cfg.runtime.get("vis", {}).get("wandb", False):
        custom_hooks.append(WandbValHook(by_epoch=by_epoch))
    draw = cfg.runtime.get("draw_fn")
    if draw is not None and int(cfg.runtime.get("num_vis_images", 0)) > 0:
        custom_hooks.append(
            ValImageHook(instantiate(draw, _partial_=True), int(cfg.runtime.num_vis_images), by_epoch=by_epoch)
        )

    if mode == "train":
        train_set = instantiate(dcfg.train, _convert_="partial")
        train_loader = build_dataloader(train_set, dcfg, schedule, True, seed, by_epoch)
        lr = scaled_lr(schedule, world_size)
        groups = param_groups(
            model, float(schedule.optimizer.get("weight_decay", 0.0)), list(schedule.get("no_weight_decay", [])),
            decay_1d=bool(schedule.get("decay_1d", False)),
        )
        optimizer = instantiate(schedule.optimizer, params=groups, lr=lr, _convert_="partial")
        wrapper_kwargs: dict[str, Any] = dict(accumulative_counts=int(schedule.get("accumulative_counts", 1)))
        if schedule.get("clip_grad"):
            wrapper_kwargs["clip_grad"] = to_plain(schedule.clip_grad)
        optim_wrapper = build_optim_wrapper(optimizer, cast_dtype, device_type, **wrapper_kwargs)
        # per-process iterations of one epoch (the loader knows about drop_last and the distributed split)
        epoch_length = len(train_loader) if by_epoch else math.ceil(len(train_set) / (schedule.batch_size * world_size))
        schedulers = build_schedulers(optimizer, schedule.get("schedulers"), epoch_length) or None
        length = dict(max_epochs=int(schedule.max_epochs)) if by_epoch else dict(max_iters=int(schedule.max_iters))
        train_cfg = dict(by_epoch=by_epoch, val_interval=int(schedule.val_interval), **length)
        kwargs.update(
            train_dataloader=train_loader,
            optim_wrapper=optim_wrapper,
            param_scheduler=schedulers,
            train_cfg=train_cfg,
        )
        resume = cfg.get("resume", False)
        if resume == "auto" or resume is True:
            from mmengine.runner.checkpoint import find_latest_checkpoint

            # nothing to resume yet (first launch): start from load_from, if any, instead of silently from scratch
            if find_latest_checkpoint(work_dir) is None and cfg.get("load_from"):
                kwargs["load_from"] = str(cfg.load_from)
            else:
                kwargs["resume"] = True
        elif resume:
            kwargs.update(resume=True, load_from=str(resume))
        elif cfg.get("load_from"):
            kwargs["load_from"] = str(cfg.load_from)
        if dcfg.get("val") is not None and evaluator:
            val_set = instantiate(dcfg.val, _convert_="partial")
            kwargs.update(
                val_dataloader=build_dataloader(val_set, dcfg, schedule, False, seed, by_epoch),
                val_evaluator=evaluator,
                val_cfg=dict(type=AutocastValLoop, **loop_cfg),
            )
    elif mode == "test":
        split = "test" if dcfg.get("test") is not None else "val"
        test_set = instantiate(dcfg[split], _convert_="partial")
        kwargs.update(
            test_dataloader=build_dataloader(test_set, dcfg, schedule, False, seed, by_epoch),
            test_evaluator=evaluator,
            test_cfg=dict(type=AutocastTestLoop, **loop_cfg),
        )
    else:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")

    kwargs.update(default_hooks=default_hooks, custom_hooks=custom_hooks, cfg=runner_cfg)
    return ForgeRunner(**kwargs)
