"""Deterministic ODE solvers: every one is a ``Sampler`` built on one of two engines,
``multistep.linear_multistep`` (one model call a step, a history buffer, an optional
corrector) or ``singlestep.explicit_stages`` (several model calls a step)."""
