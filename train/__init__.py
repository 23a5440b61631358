"""Training, sampling and evaluation of diffusion and flow models (``train.jobs`` is the entry point).

``losses`` (DSM eps/x0/v, flow velocity, EDM preconditioning), ``optim``, ``ema``,
``checkpoint`` (orbax), ``data`` (CIFAR-10, digits, synthetic; deterministic host shards),
``distributed`` (multi-host start-up, mesh, shardings), ``nets`` (networks by name),
``loop`` (the train loop), ``config`` (schema and validation), ``jobs`` (train / sample / eval).
"""
