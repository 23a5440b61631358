"""Time-parallel sampling: sliding-window Picard / Jacobi iterations over any ``Sampler``'s step
(``picard``), sharded over a device mesh (``mesh``), and the parallel inversion of autoregressive
affine flows (``ar_inverse``)."""
from samplers.parallel.ar_inverse import ARFlow, InverseStats, inverse_jacobi, inverse_sequential
from samplers.parallel.mesh import window_mesh
from samplers.parallel.picard import (ParallelSampler, ParallelStats, default_tol, parallel_sample, step_scale,
                                      time_parallel)

__all__ = ["ARFlow", "InverseStats", "ParallelSampler", "ParallelStats", "default_tol", "inverse_jacobi",
           "inverse_sequential", "parallel_sample", "step_scale", "time_parallel", "window_mesh"]
