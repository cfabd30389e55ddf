"""SO-GAAL and MO-GAAL (Liu, Li, Li, Liu, Yang, Cheng & Yang, "Generative Adversarial Active Learning for
Unsupervised Outlier Detection", TKDE 2019, arXiv 1809.10816), in PyTorch.

Facts taken from the paper and the official Keras code (``leibinghe/GAAL-based-outlier-detection``, read, not
copied):

* generator: ``Dense(d) -> ReLU -> Dense(d) -> ReLU``, identity kernels, zero biases, noise ``U(0, 1)^d``;
  its output is ``>= 0``, hence the default min-max scaling of the inputs to ``[0, 1]``;
* discriminator: ``Dense(ceil(sqrt(n))) -> ReLU -> Dense(1) -> sigmoid``, Keras ``VarianceScaling(1, fan_in,
  normal)`` kernels (a normal truncated at 2 std, std corrected to ``sqrt(1 / fan_in)``), zero biases; BCE;
* optimisers: Keras-2 SGD (``lr_t = lr / (1 + decay * t)``, ``v = m v - lr_t g``, ``w += v``), ``lr_d = 0.01``,
  ``lr_g = 1e-4``, ``decay = 1e-6``, ``momentum = 0.9``; :class:`KerasSGD` reproduces it (``decay`` is a
  learning-rate decay, not weight decay);
* data shuffled once, batches of ``min(500, n)`` in order, the remainder dropped; ``3 * stop_epochs`` epochs,
  generators trained only during the first ``stop_epochs`` ("stop node", paper §IV-C). The official scripts let the
  generator train one epoch (SO) or one batch (MO) longer because the flag is set after the update; we use exactly
  ``stop_epochs``;
* per batch: one discriminator step on ``B`` real (label 1) + ``B`` generated (label 0) points, one mean BCE over
  ``2B``; then one generator step (after ``stop_epochs``: none);
* SO-GAAL: one generator with target 1, trained on the same noise as the discriminator step;
* MO-GAAL (Algorithm 2): ``k`` sub-generators; sub-generator ``i`` (``i = 0..k-1``) targets the ``i/k`` quantile
  (linear interpolation) of ``D`` over the **whole** data set, recomputed after every discriminator step, and
  provides ``(k - i) * (B // (k (k + 1) / 2))`` of the ``B`` fake points (the last one also takes the remainder);
  each sub-generator is trained on a fresh full batch of ``B`` noise vectors.
* **score: OS(x) = 1 - D(x)** (Algorithm 1: D(x) is the probability of being normal). PyOD's ``SO_GAAL``/``MO_GAAL``
  (up to 3.6.7) return ``D(x)`` itself, which inverts the ranking; ``decision_function`` here returns ``1 - D(x)``.

Implementation choices (not in the official code): the ``k`` sub-generators are stored as batched weight tensors
``(k, d, d)`` (generator step: one ``baddbmm`` over ``(k, B, d)``; since each one's parameters receive gradient only
from its own loss, one step on the summed losses equals ``k`` independent steps; discriminator step: each
sub-generator on its own share only); BCE is computed from logits (Keras clips probabilities at 1e-7 instead); all
random draws come from one seeded CPU ``torch.Generator`` (bit-reproducible on CPU, the same draws on CUDA);
``stop_epochs="auto"`` replaces the hand-picked stop node by an explicit rule (:func:`loss_flattened`);
``init="pyod"`` reproduces PyOD's initialisation, which — with the SO loss summed as PyOD does, i.e. ``lr_d`` doubled —
is what separates PyOD's results from ours (``docs/anomaly.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["KerasSGD", "Discriminator", "SubGenerators", "fake_shares", "quantile_targets", "loss_flattened",
           "SOGAAL", "MOGAAL"]

# Keras' truncated normal keeps std/0.8796 inside ±2 std so that the effective std equals the requested one
_TRUNC_STD_CORRECTION = 0.87962566103423978


class KerasSGD:
    """SGD with Keras-2 semantics: ``lr_t = lr / (1 + decay * t)`` (``t`` = updates done so far),
    ``v ← momentum * v - lr_t * g``, ``w ← w + v``.

    A plain class rather than a ``torch.optim.Optimizer`` subclass: the latter imports ``torch._dynamo`` on first
    use (seconds), which dominated the fit time on small data sets.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, decay: float = 0.0):
        if lr <= 0 or momentum < 0 or decay < 0:
            raise ValueError(f"KerasSGD: need lr > 0, momentum >= 0, decay >= 0; got {lr}, {momentum}, {decay}")
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.decay = float(lr), float(momentum), float(decay)
        self.velocity = [torch.zeros_like(p) for p in self.params]
        self.iterations = 0

    def current_lr(self) -> float:
        return self.lr / (1.0 + self.decay * self.iterations)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr_t = self.current_lr()
        for p, v in zip(self.params, self.velocity):
            if p.grad is None:
                continue
            v.mul_(self.momentum).add_(p.grad, alpha=-lr_t)
            p.add_(v)
        self.iterations += 1


class Discriminator(nn.Module):
    """``(N, d) -> (N,)`` logits; ``D(x) = sigmoid(logit)`` is the probability that ``x`` is real (normal)."""

    def __init__(self, d: int, hidden: int, generator: torch.Generator | None = None):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        for layer in (self.fc1, self.fc2):
            std = math.sqrt(1.0 / layer.in_features) / _TRUNC_STD_CORRECTION
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std, generator=generator)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x))).squeeze(-1)


class SubGenerators(nn.Module):
    """``k`` independent generators ``z -> relu(W2 relu(W1 z + b1) + b2)``, weights ``(k, d, d)``, identity init.

    ``forward(z)`` with ``z`` of shape ``(k, B, d)`` returns ``(k, B, d)``.
    """

    def __init__(self, k: int, d: int):
        super().__init__()
        eye = torch.eye(d).expand(k, d, d).clone()
        self.w1 = nn.Parameter(eye.clone())
        self.b1 = nn.Parameter(torch.zeros(k, 1, d))
        self.w2 = nn.Parameter(eye.clone())
        self.b2 = nn.Parameter(torch.zeros(k, 1, d))

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(torch.baddbmm(self.b1, z, self.w1))  # Keras Dense: x @ kernel (+ bias)
        return F.relu(torch.baddbmm(self.b2, h, self.w2))

    def forward_shares(self, z: Tensor, shares: list[int]) -> Tensor:
        """Sub-generator ``i`` applied to the ``i``-th consecutive block of ``shares[i]`` rows of ``z`` ``(B, d)``."""
        out, start = [], 0
        for i, n in enumerate(shares):
            h = F.relu(torch.addmm(self.b1[i], z[start:start + n], self.w1[i]))
            out.append(F.relu(torch.addmm(self.b2[i], h, self.w2[i])))
            start += n
        return torch.cat(out)


def fake_shares(batch_size: int, k: int) -> list[int]:
    """Number of fake points each MO-GAAL sub-generator contributes to a batch of ``batch_size`` fakes.

    Sub-generator ``i`` gets ``(k - i) * (batch_size // (k (k + 1) / 2))``; the last one also takes the remainder,
    so the counts sum to ``batch_size`` (official code's slicing). Shares are ∝ ``k - i`` up to that remainder.
    """
    if k < 1 or batch_size < 1:
        raise ValueError(f"need k >= 1 and batch_size >= 1, got k={k}, batch_size={batch_size}")
    unit = batch_size // (k * (k + 1) // 2)
    shares = [(k - i) * unit for i in range(k)]
    shares[-1] += batch_size - sum(shares)
    return shares


def quantile_targets(d_values: Tensor, k: int) -> Tensor:
    """``(k,)`` targets ``T_i = quantile(D(X), i / k)``, ``i = 0..k-1``, linear interpolation (as pandas)."""
    q = torch.arange(k, dtype=d_values.dtype, device=d_values.device) / k
    return torch.quantile(d_values.flatten(), q)


_COMMON_DOC = """
    Parameters (all scikit-learn parameters: ``get_params`` / ``set_params`` / ``sklearn.base.clone`` work):
        stop_epochs: generator epochs ("stop node"); the run has ``3 * stop_epochs`` epochs, the generators train in
            the first ``stop_epochs``. ``"auto"``: the generators train until their loss flattens (see
            :func:`loss_flattened`), at most ``max_stop_epochs``; the epochs used are in ``stop_epochs_``.
        auto_stop_window, auto_stop_tol: the ``"auto"`` criterion (window ``w`` epochs, relative tolerance).
        max_stop_epochs: cap for ``"auto"``.
        lr_d, lr_g, decay, momentum: Keras-2 SGD of the discriminator / generators (:class:`KerasSGD`).
        contamination: fraction of training points labelled 1 by ``labels_`` / ``predict``.
        preprocessing: ``"minmax"`` (fitted on the training data; the generators output ``[0, inf)``) or None.
        batch_size: at most this many points per batch (``min(batch_size, n)``), remainder dropped.
        init: ``"official"`` (the official Keras code: truncated-normal fan-in kernels with std ``sqrt(1/fan_in)``,
            zero biases everywhere) or ``"pyod"`` (PyOD's PyTorch port: discriminator kernels ``N(0, gain² /
            fan_in)`` with the ReLU gain ``sqrt 2`` / sigmoid gain 1, PyTorch's default ``U(±1/sqrt(fan_in))``
            biases in the discriminator and the generators). Used to compare with PyOD (tests/anomaly).
        random_state: seed of the one ``torch.Generator`` behind every draw (None: fresh entropy).
        device: ``"cpu"``, ``"cuda"``, or None (CUDA when available).
        progress: tqdm bar over epochs.
"""


def loss_flattened(losses: list[float], window: int, tol: float) -> bool:
    """Stop rule of ``stop_epochs="auto"``: True when the mean of the last ``window`` per-epoch generator losses
    differs from the mean of the ``window`` before by at most ``tol`` times the latter (needs ``2 * window``
    epochs). The official code picks the stop node by eye where the generator loss flattens; this is that rule made
    explicit (a moving average over ``window`` epochs, so single noisy epochs do not stop it)."""
    if window < 1 or tol < 0:
        raise ValueError(f"need window >= 1 and tol >= 0, got window={window}, tol={tol}")
    if len(losses) < 2 * window:
        return False
    now = float(np.mean(losses[-window:]))
    before = float(np.mean(losses[-2 * window:-window]))
    return abs(now - before) <= tol * abs(before)


class _GAAL(BaseEstimator):
    """Shared training loop; see the module docstring. Subclasses set ``k`` and the targets."""

    # the parameters every GAAL takes (sklearn reads them from the signature: no **kwargs)
    def __init__(self, stop_epochs: int | str = 20, lr_d: float = 0.01, lr_g: float = 1e-4, decay: float = 1e-6,
                 momentum: float = 0.9, contamination: float = 0.1, preprocessing: str | None = "minmax",
                 batch_size: int = 500, init: str = "official", random_state: int | None = 0,
                 device: str | None = None, progress: bool = True, auto_stop_window: int = 5,
                 auto_stop_tol: float = 0.01, max_stop_epochs: int = 100):
        self.stop_epochs = stop_epochs
        self.lr_d = lr_d
        self.lr_g = lr_g
        self.decay = decay
        self.momentum = momentum
        self.contamination = contamination
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.init = init
        self.random_state = random_state
        self.device = device
        self.progress = progress
        self.auto_stop_window = auto_stop_window
        self.auto_stop_tol = auto_stop_tol
        self.max_stop_epochs = max_stop_epochs

    # --- hooks -------------------------------------------------------------------------------------------------
    fresh_generator_noise: bool = False  # MO: fresh noise for the generator step; SO: reuse the D-step noise

    def _n_generators(self) -> int:
        return 1

    def _shares(self, batch_size: int) -> list[int]:
        return [batch_size]

    def _targets(self, D: Discriminator, X_all: Tensor) -> Tensor:
        return torch.ones(1, device=X_all.device)

    # --- API ---------------------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if isinstance(self.stop_epochs, str):
            if self.stop_epochs != "auto":
                raise ValueError(f"stop_epochs must be an int >= 1 or 'auto', got {self.stop_epochs!r}")
            if int(self.max_stop_epochs) < 1 or int(self.auto_stop_window) < 1 or self.auto_stop_tol < 0:
                raise ValueError("stop_epochs='auto' needs max_stop_epochs >= 1, auto_stop_window >= 1, "
                                 f"auto_stop_tol >= 0; got {self.max_stop_epochs}, {self.auto_stop_window}, "
                                 f"{self.auto_stop_tol}")
        elif int(self.stop_epochs) < 1:
            raise ValueError(f"stop_epochs must be >= 1 or 'auto', got {self.stop_epochs}")
        if not 0.0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")
        if self.preprocessing not in (None, "none", "minmax"):
            raise ValueError(f"preprocessing must be 'minmax' or None, got {self.preprocessing!r}")
        if self.init not in ("official", "pyod"):
            raise ValueError(f"init must be 'official' or 'pyod', got {self.init!r}")
        if int(self._n_generators()) < 1:
            raise ValueError(f"k must be >= 1, got {self._n_generators()}")

    def _transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (n, {self.n_features_in_}), got shape {X.shape}")
        if self.preprocessing == "minmax":
            X = (X - self.data_min_) / self.data_range_
        return X

    def _build(self, d: int, n: int, gen: torch.Generator) -> tuple[Discriminator, SubGenerators]:
        D = Discriminator(d, math.ceil(math.sqrt(n)), generator=gen)
        G = SubGenerators(self._n_generators(), d)
        if self.init == "pyod":
            with torch.no_grad():
                for layer, gain in ((D.fc1, math.sqrt(2.0)), (D.fc2, 1.0)):
                    layer.weight.normal_(0.0, gain / math.sqrt(layer.in_features), generator=gen)
                    bound = 1.0 / math.sqrt(layer.in_features)
                    layer.bias.uniform_(-bound, bound, generator=gen)
                for b in (G.b1, G.b2):
                    b.uniform_(-1.0 / math.sqrt(d), 1.0 / math.sqrt(d), generator=gen)
        return D, G

    def fit(self, X: np.ndarray, y: object = None):
        """Train on ``X`` ``(n, d)`` (``y`` ignored). Sets ``decision_scores_``, ``threshold_``, ``labels_``,
        ``stop_epochs_``, ``history_`` (one dict per epoch: mean discriminator and generator BCE)."""
        self._check_params()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError(f"X must be (n_samples >= 2, n_features), got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or inf")
        n, d = X.shape
        self.n_features_in_ = d
        self.data_min_ = X.min(0)
        rng = X.max(0) - self.data_min_
        self.data_range_ = np.where(rng > 0, rng, 1.0)
        Xs = self._transform(X)

        dev = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        gen = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        if self.random_state is None:
            gen.seed()
        k = self._n_generators()
        D, G = self._build(d, n, gen)
        D, G = D.to(dev), G.to(dev)
        opt_d = KerasSGD(D.parameters(), self.lr_d, self.momentum, self.decay)
        opt_g = KerasSGD(G.parameters(), self.lr_g, self.momentum, self.decay)

        perm = torch.randperm(n, generator=gen)
        X_all = torch.as_tensor(Xs, dtype=torch.float32).to(dev)
        X_shuf = X_all[perm.to(dev)]
        B = min(int(self.batch_size), n)
        n_batches = n // B
        shares = self._shares(B)
        labels = torch.cat([torch.ones(B), torch.zeros(B)]).to(dev)
        auto = self.stop_epochs == "auto"
        stop = int(self.max_stop_epochs) if auto else int(self.stop_epochs)  # generator epochs (auto: the cap)
        stopped = not auto  # auto: the stop node is not known yet
        history, g_losses = [], []
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=None if auto else 3 * stop, desc=type(self).__name__, leave=False)
        epoch = 0
        while epoch < 3 * stop:
            train_g = epoch < stop
            d_sum = g_sum = 0.0
            for b in range(n_batches):
                real = X_shuf[b * B:(b + 1) * B]
                noise = torch.rand(B, d, generator=gen).to(dev)
                # --- discriminator step on B real + B fake (fakes split across sub-generators) ---
                with torch.no_grad():
                    fake = G.forward_shares(noise, shares)
                logits = D(torch.cat([real, fake]))
                d_loss = F.binary_cross_entropy_with_logits(logits, labels)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                d_sum += d_loss.item()
                # --- generator step ---
                with torch.no_grad():
                    targets = self._targets(D, X_all)  # (k,)
                z_g = torch.rand(B, d, generator=gen).to(dev) if self.fresh_generator_noise else noise
                z_g = z_g.expand(k, B, d)
                for p in D.parameters():
                    p.requires_grad_(False)
                with torch.set_grad_enabled(train_g):
                    g_logits = D(G(z_g).reshape(k * B, d)).view(k, B)
                    per_gen = F.binary_cross_entropy_with_logits(
                        g_logits, targets[:, None].expand(k, B), reduction="none").mean(1)
                    if train_g:
                        opt_g.zero_grad(set_to_none=True)
                        per_gen.sum().backward()
                        opt_g.step()
                for p in D.parameters():
                    p.requires_grad_(True)
                g_sum += per_gen.mean().item()
            g_epoch = g_sum / max(n_batches, 1)
            history.append({"step": epoch + 1, "d_loss": d_sum / max(n_batches, 1), "g_loss": g_epoch,
                            "generator_trained": bool(train_g)})
            epoch += 1
            if bar is not None:
                bar.update(1)
            if not stopped and train_g:
                g_losses.append(g_epoch)
                if loss_flattened(g_losses, int(self.auto_stop_window), float(self.auto_stop_tol)):
                    stop, stopped = epoch, True  # the stop node: D alone for 2 * stop more epochs
        if bar is not None:
            bar.close()
        self.stop_epochs_ = stop
        self.auto_stop_reached_ = stopped if auto else None
        self.n_discriminator_updates_ = opt_d.iterations
        self.n_generator_updates_ = opt_g.iterations
        self.discriminator_ = D.eval()
        self.generators_ = G.eval()
        self.history_ = history
        self.device_ = dev
        self.decision_scores_ = self.decision_function(X)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    @torch.no_grad()
    def discriminator_output(self, X: np.ndarray) -> np.ndarray:
        """``D(x)`` in ``[0, 1]`` (probability of being normal), ``(n,)``."""
        if not hasattr(self, "discriminator_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        x = torch.as_tensor(self._transform(X), dtype=torch.float32).to(self.device_)
        return torch.sigmoid(self.discriminator_(x)).double().cpu().numpy()

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Outlier score ``OS(x) = 1 - D(x)`` (paper, Algorithm 1): higher = more anomalous."""
        return 1.0 - self.discriminator_output(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 = outlier (score above the training ``contamination`` quantile), 0 = inlier."""
        return (self.decision_function(X) > self.threshold_).astype(int)


class SOGAAL(_GAAL):
    """Single-objective GAAL: one generator aimed at ``D = 1`` (paper §IV-B); parameters as :class:`_GAAL`."""

    fresh_generator_noise = False


class MOGAAL(_GAAL):
    """Multiple-objective GAAL with ``k`` sub-generators (paper §IV-D, Algorithm 2)."""

    fresh_generator_noise = True

    def __init__(self, k: int = 10, stop_epochs: int | str = 20, lr_d: float = 0.01, lr_g: float = 1e-4,
                 decay: float = 1e-6, momentum: float = 0.9, contamination: float = 0.1,
                 preprocessing: str | None = "minmax", batch_size: int = 500, init: str = "official",
                 random_state: int | None = 0, device: str | None = None, progress: bool = True,
                 auto_stop_window: int = 5, auto_stop_tol: float = 0.01, max_stop_epochs: int = 100):
        self.k = k
        super().__init__(stop_epochs=stop_epochs, lr_d=lr_d, lr_g=lr_g, decay=decay, momentum=momentum,
                         contamination=contamination, preprocessing=preprocessing, batch_size=batch_size, init=init,
                         random_state=random_state, device=device, progress=progress,
                         auto_stop_window=auto_stop_window, auto_stop_tol=auto_stop_tol,
                         max_stop_epochs=max_stop_epochs)

    def _n_generators(self) -> int:
        return int(self.k)

    def _shares(self, batch_size: int) -> list[int]:
        return fake_shares(batch_size, int(self.k))

    def _targets(self, D: Discriminator, X_all: Tensor) -> Tensor:
        return quantile_targets(torch.sigmoid(D(X_all)), int(self.k))


SOGAAL.__doc__ += _COMMON_DOC
MOGAAL.__doc__ += _COMMON_DOC + "        k: number of sub-generators (paper: 10).\n"
