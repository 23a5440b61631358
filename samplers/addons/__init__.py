"""Training-free add-ons around any sampler (issue 22): model-output wrappers, an initial-state and a
grid change, a carried statistic; ``with_addons(sampler, *addons)`` is again one ``Sampler``."""
from samplers.addons.boost import boost, skip_steps
from samplers.addons.cache import block_cache, cached_model, calibrate, measure_changes, refresh_schedule
from samplers.addons.cads import cads
from samplers.addons.core import Addon, AddonState, identity, keyed, stateless, with_addons
from samplers.addons.detect import drop_flagged, keep_mask, trajectory_variance, x0_variance
from samplers.addons.grids import beta_grid
from samplers.addons.guidance import classifier_guidance, energy_guidance, epsilon_scaling
from samplers.addons.higs import higs
from samplers.addons.minority import self_guided_minority

__all__ = ["Addon", "AddonState", "beta_grid", "block_cache", "boost", "cached_model", "cads", "calibrate",
           "classifier_guidance", "drop_flagged", "measure_changes", "refresh_schedule",
           "energy_guidance", "epsilon_scaling", "higs", "identity", "keep_mask", "keyed", "self_guided_minority",
           "skip_steps", "stateless", "trajectory_variance", "with_addons", "x0_variance"]
