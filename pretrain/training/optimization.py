"""Optimisers for pretraining: the original ELECTRA AdamW, an optional LAMB, the schedules.

Both optimisers are Keras 3 optimisers that a custom `tf.function` train step calls with
`optimizer.apply_gradients(zip(grads, variables))`, inside or outside a `tf.distribute`
strategy. What they do differently from the stock Keras ones, and why:

- AdamW is the original's `AdamWeightDecayOptimizer`: beta1 0.9, beta2 0.999, eps 1e-6,
  *no* bias correction, weight decay added to the Adam update before the learning rate
  multiplies it (`w -= lr * (m / (sqrt(v) + eps) + wd * w)`). `bias_correction=True`
  (hparam `adam_bias_correction`) divides m and v by `1 - beta^t` as Adam does: without it
  the first ~1/(1-beta2) = 1,000 updates are up to 3.2x larger than the learning rate says,
  which a long warm-up hides but a short run does not (docs/demo.md measures what it does).
- Weight decay (and LAMB's trust ratio) is skipped for every variable whose *path* contains
  "LayerNorm", "layer_norm" or "bias" (the original's `exclude_from_weight_decay`). Keras
  matches only `variable.name` ("gamma", "beta"), which would decay LayerNorm, so the model
  must put "layer_norm"/"LayerNorm" in its LayerNorm layer names (Keras' default
  `layer_normalization` also matches) and keep biases named "bias".
- Gradients are summed across replicas first and clipped by global norm afterwards, so a
  run on R replicas makes exactly the update of one device on the same global batch. The
  caller's per-replica loss must therefore be divided by the *global* batch (or by
  `num_replicas_in_sync` after a per-replica mean), as for any Keras optimizer under
  `tf.distribute`. (The original on TPU clipped each shard before averaging; on one device
  the two are the same.)
- Gradient accumulation (`gradient_accumulation_steps` N, Keras' accumulator variables):
  each call adds one micro batch; every N-th call applies the mean, so N micro batches
  equal one batch N times larger. Keras' own accumulation step is replaced because it
  puts the cross-replica sum inside a `cond`, which MirroredStrategy refuses, and it
  evaluates the schedule per micro batch; here `optimizer.iterations` (applied updates)
  drives the schedule.
- An update whose summed gradients are not finite is skipped (the weights and slots keep
  their values); with float16 loss scaling this is what a skipped step means.

Build the optimiser inside `strategy.scope()` and always compute gradients of
`optimizer.scale_loss(loss)` (identity unless float16 loss scaling is on).
"""
from __future__ import annotations

import re

from foundation.quiet_tf import keras, tf

from foundation.errors import UserError

EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")
OPTIMIZERS = ("adamw", "lamb")
PRECISIONS = ("float32", "bfloat16", "float16")
# Keras 3.10 moved the step count (`_iterations += 1`) from `_backend_apply_gradients`, which
# the optimisers below replace, to `apply`; before it (Keras 3.6 on TensorFlow 2.18's TPU
# images) the replacement must count the step itself.
COUNTS_OWN_STEPS = tuple(int(p) for p in keras.version().split(".")[:2]) < (3, 10)


class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The original's schedule: `lr * (1 - step/T)^power * min(1, step/warmup)`.

    The polynomial decay counts from step 0, *including* the warm-up steps (as
    `tf.train.polynomial_decay(global_step)` times the warm-up factor in the original), so
    the peak reached at the end of warm-up is already slightly below `learning_rate`; the
    rate is 0 at step 0 and at and after step T.
    """

    def __init__(self, learning_rate: float, num_train_steps: int, num_warmup_steps: int,
                 lr_decay_power: float = 1.0):
        self.learning_rate = float(learning_rate)
        self.num_train_steps = int(num_train_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        self.lr_decay_power = float(lr_decay_power)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(step, float(self.num_train_steps)) / float(self.num_train_steps)
        decayed = self.learning_rate * tf.pow(1.0 - progress, self.lr_decay_power)
        if self.num_warmup_steps <= 0:
            return decayed
        return decayed * tf.minimum(1.0, step / float(self.num_warmup_steps))

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "num_train_steps": self.num_train_steps,
            "num_warmup_steps": self.num_warmup_steps,
            "lr_decay_power": self.lr_decay_power,
        }


def wsd_learning_rate(step, learning_rate: float, num_train_steps: int, num_warmup_steps: int, decay_steps: int):
    """Warmup-stable-decay: `lr * step/warmup` during warm-up, then `lr` (stable), then linear to 0 over the
    last `decay_steps` (0 at and after `num_train_steps`).

    The rate at a step does not depend on `num_train_steps` before the decay starts, so a run that
    branches from a long run's checkpoint and sets its own end (`branch_from`) continues the long run's
    rate exactly and then anneals: each budget of a curve is a decayed run, not a raw checkpoint.
    """
    step = tf.cast(step, tf.float32)
    warm = tf.minimum(1.0, step / float(num_warmup_steps)) if num_warmup_steps > 0 else 1.0
    left = tf.maximum(float(num_train_steps) - step, 0.0)
    decay = tf.minimum(1.0, left / float(decay_steps)) if decay_steps > 0 else tf.cast(left > 0, tf.float32)
    return learning_rate * warm * decay


class WarmupStableDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`wsd_learning_rate` as a Keras schedule."""

    def __init__(self, learning_rate: float, num_train_steps: int, num_warmup_steps: int, decay_steps: int):
        self.learning_rate = float(learning_rate)
        self.num_train_steps = int(num_train_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        self.decay_steps = int(decay_steps)

    def __call__(self, step):
        return wsd_learning_rate(step, self.learning_rate, self.num_train_steps, self.num_warmup_steps,
                                 self.decay_steps)

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "num_train_steps": self.num_train_steps,
                "num_warmup_steps": self.num_warmup_steps, "decay_steps": self.decay_steps}


def learning_rate_schedule(*, learning_rate: float, num_train_steps: int, num_warmup_steps: int,
                           lr_decay_power: float = 1.0, lr_schedule: str = "linear",
                           decay_steps: int = 0) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up, then polynomial (power 1: linear) decay to 0 at `num_train_steps` ("linear", the
    original's); or warmup-stable-decay with `decay_steps` ("wsd", `wsd_learning_rate`)."""
    if num_train_steps <= 0:
        raise UserError(f"num_train_steps must be positive, got {num_train_steps}")
    if num_warmup_steps < 0 or num_warmup_steps > num_train_steps:
        raise UserError(
            f"num_warmup_steps must be in [0, num_train_steps={num_train_steps}], got {num_warmup_steps}")
    if learning_rate <= 0:
        raise UserError(f"learning_rate must be positive, got {learning_rate}")
    if lr_schedule == "wsd":
        if not 0 <= decay_steps <= num_train_steps - num_warmup_steps:
            raise UserError(f"decay_steps must be in [0, num_train_steps - num_warmup_steps = "
                            f"{num_train_steps - num_warmup_steps}], got {decay_steps}")
        return WarmupStableDecay(learning_rate, num_train_steps, num_warmup_steps, decay_steps)
    if lr_schedule != "linear":
        raise UserError(f"lr_schedule must be linear or wsd, got {lr_schedule!r}")
    return WarmupPolynomialDecay(learning_rate, num_train_steps, num_warmup_steps, lr_decay_power)


def uses_weight_decay(variable_path: str) -> bool:
    """False for LayerNorm and bias variables, matched by path as the original does."""
    return not any(re.search(pattern, variable_path) for pattern in EXCLUDE_FROM_WEIGHT_DECAY)


def _path(variable) -> str:
    return getattr(variable, "path", None) or variable.name


class _ElectraOptimizer(keras.optimizers.Optimizer):
    """Shared part: decay mask by path, all-reduce then global-norm clip, dense gradients."""

    default_name = "electra_optimizer"

    def __init__(self, *, learning_rate, weight_decay_rate: float = 0.01, clip_norm: float | None = 1.0,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-6,
                 gradient_accumulation_steps: int | None = None, name: str | None = None,
                 bias_correction: bool = False):
        super().__init__(learning_rate=learning_rate, gradient_accumulation_steps=gradient_accumulation_steps,
                         name=name or self.default_name)
        self.weight_decay_rate = weight_decay_rate
        self.clip_norm = clip_norm
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.bias_correction = bias_correction

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # m then v for each variable, the order Keras' own Adam creates them in (its
        # `add_optimizer_variables` does the same but is missing from Keras 3.6, which
        # Google's TensorFlow 2.18 TPU images carry).
        slots = [(self.add_variable_from_reference(v, "m"), self.add_variable_from_reference(v, "v"))
                 for v in variables]
        self._m, self._v = [m for m, _ in slots], [v for _, v in slots]
        self._decays = [uses_weight_decay(_path(v)) for v in variables]

    def _get_current_learning_rate(self):
        # Keras evaluates a schedule at the micro-step count; ours is in applied updates.
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def _backend_apply_gradients(self, grads, trainable_variables):
        # Replaces Keras' version, whose accumulation puts the cross-replica sum inside a
        # `cond` (refused under MirroredStrategy) and which clips before that sum. Here the
        # sum is unconditional, clipping sees the global mean gradient, and only per-variable
        # updates (no synchronisation) sit inside a `cond`.
        grads = [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices from embedding lookups
        replica = tf.distribute.get_replica_context()
        if replica is not None:
            grads = replica.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        # Checked after the sum, so every replica agrees (Keras' LossScaleOptimizer checks only
        # the first replica's own gradients); a non-finite update is skipped, never applied.
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        steps = self.gradient_accumulation_steps or 1
        if steps > 1:
            accumulators = [self._accumulated_gradients[self._get_variable_index(v)] for v in trainable_variables]
            totals = [tf.convert_to_tensor(a) + g for a, g in zip(accumulators, grads)]
            grads = [t / steps for t in totals]
            is_update = tf.equal((self._iterations + 1) % steps, 0)
        else:
            totals, is_update = grads, tf.constant(True)
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        # the tf.Variable (the distributed one under a strategy) behind each Keras variable; not
        # `isinstance(v, keras.Variable)`: in Keras 3.6 that class is not the backend's variable
        variables = [v if isinstance(v, tf.Variable) else v.value for v in trainable_variables]
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_apply, self._distribution_strategy,
            variables, grads, totals, self.learning_rate, is_update, finite)
        if COUNTS_OWN_STEPS:
            self._iterations.assign_add(1)

    def _distributed_apply(self, distribution, variables, grads, totals, learning_rate, is_update, finite):
        for variable, grad, total in zip(variables, grads, totals):
            distribution.extended.update(
                variable, self._apply_one, args=(grad, total, learning_rate, is_update, finite), group=False)

    def _apply_one(self, variable, grad, total, learning_rate, is_update, finite):
        """Update one variable; or add to its gradient sum (accumulating); or skip (non-finite)."""
        accumulator = None
        if self.gradient_accumulation_steps:
            accumulator = self._accumulated_gradients[self._get_variable_index(variable)]

        def apply():
            self.update_step(grad, variable, learning_rate)
            if accumulator is not None:
                self.assign(accumulator, tf.zeros_like(total))
            return tf.constant(True)

        def accumulate_or_skip():
            if accumulator is not None:
                self.assign(accumulator, tf.where(is_update, tf.zeros_like(total), total))
            return tf.constant(False)

        tf.cond(is_update & finite, apply, accumulate_or_skip)

    def _moments(self, gradient, variable):
        """Update and return (m, v) of `variable` with the new gradient."""
        index = self._get_variable_index(variable)
        m, v = self._m[index], self._v[index]
        new_m, new_v = _new_moments(gradient, m, v, self.beta_1, self.beta_2)
        self.assign(m, new_m)
        self.assign(v, new_v)
        return tf.convert_to_tensor(m), tf.convert_to_tensor(v), self._decays[index]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(weight_decay_rate=self.weight_decay_rate, clip_norm=self.clip_norm,
                      beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                      bias_correction=self.bias_correction)
        return config

    def _corrections(self, dtype):
        """Adam's `(1 - beta1^t, 1 - beta2^t)` at this update, or (1, 1) without bias correction."""
        if not self.bias_correction:
            return tf.constant(1.0, dtype), tf.constant(1.0, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        return 1.0 - tf.pow(tf.cast(self.beta_1, dtype), step), 1.0 - tf.pow(tf.cast(self.beta_2, dtype), step)


class AdamWeightDecay(_ElectraOptimizer):
    """The original ELECTRA/BERT `AdamWeightDecayOptimizer` (bias correction only if asked)."""

    default_name = "adamw"

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        m, v = self._m[index], self._v[index]
        decay = self.weight_decay_rate if self._decays[index] else 0.0
        new_m, new_v, new_w = _adamw_kernel(
            tf.cast(gradient, variable.dtype), tf.convert_to_tensor(m), tf.convert_to_tensor(v),
            tf.convert_to_tensor(variable), tf.cast(learning_rate, variable.dtype),
            *(tf.constant(c, variable.dtype) for c in (self.beta_1, self.beta_2, self.epsilon, decay)),
            *self._corrections(variable.dtype))
        self.assign(m, new_m)
        self.assign(v, new_v)
        self.assign(variable, new_w)


@tf.function(jit_compile=True)  # one pass per variable instead of ~12 elementwise kernels
def _adamw_kernel(gradient, m, v, w, learning_rate, beta_1, beta_2, epsilon, decay, correction_1, correction_2):
    """The new (m, v, w): `w -= lr * (m/c1 / (sqrt(v/c2) + eps) + decay * w)`; c1 = c2 = 1 is the original."""
    m, v = _new_moments(gradient, m, v, beta_1, beta_2)
    return m, v, w - learning_rate * (m / correction_1 / (tf.sqrt(v / correction_2) + epsilon) + decay * w)


def _new_moments(gradient, m, v, beta_1, beta_2):
    """Adam's moving averages of the gradient and its square (AdamW and LAMB alike)."""
    return beta_1 * m + (1.0 - beta_1) * gradient, beta_2 * v + (1.0 - beta_2) * tf.square(gradient)


class Lamb(_ElectraOptimizer):
    """LAMB as NVIDIA's ELECTRA uses it (the tensorflow-addons algorithm).

    Adam with bias correction (always), weight decay inside the update, and the layer-wise trust
    ratio `||w|| / ||update||` (1 when either norm is 0). LayerNorm and bias variables get
    neither decay nor the trust ratio. `keras.optimizers.Lamb` differs: it decays outside
    the trust-ratio update and applies the ratio to every variable.
    """

    default_name = "lamb"

    def __init__(self, **kwargs):
        super().__init__(**{"bias_correction": True, **kwargs})

    def update_step(self, gradient, variable, learning_rate):
        gradient = tf.cast(gradient, variable.dtype)
        m, v, adapts = self._moments(gradient, variable)
        correction_1, correction_2 = self._corrections(variable.dtype)
        update = m / correction_1 / (tf.sqrt(v / correction_2) + self.epsilon)
        ratio = 1.0
        if adapts:
            if self.weight_decay_rate > 0:
                update += self.weight_decay_rate * variable
            w_norm, u_norm = tf.norm(variable), tf.norm(update)
            ratio = tf.where((w_norm > 0) & (u_norm > 0), w_norm / tf.maximum(u_norm, 1e-30), 1.0)
        self.assign_sub(variable, ratio * tf.cast(learning_rate, variable.dtype) * update)


def make_optimizer(*, learning_rate: float, num_train_steps: int, num_warmup_steps: int,
                   weight_decay_rate: float = 0.01, lr_decay_power: float = 1.0, optimizer: str = "adamw",
                   clip_norm: float = 1.0, gradient_accumulation_steps: int = 1,
                   precision: str = "float32", adam_bias_correction: bool = False, lr_schedule: str = "linear",
                   decay_steps: int = 0) -> keras.optimizers.Optimizer:
    """The pretraining optimiser with its schedule; float16 wraps it in dynamic loss scaling.

    `precision` is a resolved one ("float32", "bfloat16", "float16"); see
    `pretrain.training.distribute.resolve_precision` for "auto". Call inside `strategy.scope()`.
    """
    if optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if gradient_accumulation_steps < 1:
        raise UserError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
    if weight_decay_rate < 0:
        raise UserError(f"weight_decay_rate must be >= 0, got {weight_decay_rate}")
    schedule = learning_rate_schedule(learning_rate=learning_rate, num_train_steps=num_train_steps,
                                      num_warmup_steps=num_warmup_steps, lr_decay_power=lr_decay_power,
                                      lr_schedule=lr_schedule, decay_steps=decay_steps)
    common = dict(learning_rate=schedule, weight_decay_rate=weight_decay_rate, clip_norm=clip_norm or None,
                  gradient_accumulation_steps=gradient_accumulation_steps if gradient_accumulation_steps > 1 else None)
    if optimizer == "adamw":
        opt = AdamWeightDecay(bias_correction=adam_bias_correction, **common)
    else:
        opt = Lamb(**common)
    if precision == "float16":
        return keras.optimizers.LossScaleOptimizer(opt)
    return opt
