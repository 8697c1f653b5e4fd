"""The simulated analog substrate: device presets (devices), differentiable device noise
(noise), and the analog operations the layers inject (analog)."""
