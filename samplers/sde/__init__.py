"""Stochastic samplers of the reverse-time SDE and exposure-bias fixes, each a ``Sampler``
whose randomness comes only from the step key.

* ``euler_maruyama``  -- Euler-Maruyama on dx = [f x - g^2 score] dt + g dW (Song et al. 2021).
* ``ancestral``       -- DDPM ancestral sampling (Ho et al. 2020) and DDIM with eta (Song et al. 2021).
* ``sde_dpm``         -- SDE-DPM-Solver-1/2 and SDE-DPM-Solver++(2M) (Lu et al. 2022b).
* ``edm_stochastic``  -- Karras et al. (2022) Alg. 2 (churn + Heun).
* ``restart``         -- Restart sampling (Xu et al. 2023).
* ``pc``              -- predictor-corrector with a Langevin corrector at a target snr (Song et al. 2021).
* ``time_shift``      -- TS-DDIM / TS-DDPM against exposure bias (Li et al. 2024).
* ``momentum``        -- heavy-ball and generalised heavy-ball multistep solvers (Wizadwongsa et al. 2023).

The multistep ones run on ``ode.multistep.linear_multistep`` (its per-step noise), the
Heun-based ones on ``ode.singlestep.explicit_stages`` (its pre-step noise).
"""
