"""Training-free add-ons around any sampler (issue 22): model-output wrappers, an initial-state and a
grid change, a carried statistic; ``with_addons(sampler, *addons)`` is again one ``Sampler``."""
from samplers.addons.boost import boost, skip_steps
from samplers.addons.cache import block_cache, cached_model, calibrate, early_exit, measure_changes, refresh_schedule
from samplers.addons.cads import cads
from samplers.addons.core import Addon, AddonState, identity, keyed, stateless, with_addons
from samplers.addons.density import density_guidance
from samplers.addons.detect import drop_flagged, keep_mask, trajectory_variance, x0_variance
from samplers.addons.grids import beta_grid
from samplers.addons.guidance import classifier_guidance, energy_guidance, epsilon_scaling
from samplers.addons.higs import higs
from samplers.addons.minority import minority_guidance, self_guided_minority
from samplers.addons.upsample import upsample_guidance

__all__ = ["Addon", "AddonState", "beta_grid", "block_cache", "boost", "cached_model", "cads", "calibrate",
           "classifier_guidance", "density_guidance", "drop_flagged", "early_exit", "energy_guidance",
           "epsilon_scaling", "higs", "identity", "keep_mask", "keyed", "measure_changes", "minority_guidance",
           "refresh_schedule", "self_guided_minority", "skip_steps", "stateless", "trajectory_variance",
           "upsample_guidance", "with_addons", "x0_variance"]
