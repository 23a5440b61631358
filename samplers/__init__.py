"""samplax samplers. ``samplers.from_diffusers(config, num_inference_steps)`` builds the sampler of a
diffusers scheduler config (module ``samplers/from_diffusers.py``; import its other names with
``from samplers.from_diffusers import ...``)."""
from samplers.from_diffusers import from_diffusers

__all__ = ["from_diffusers"]
