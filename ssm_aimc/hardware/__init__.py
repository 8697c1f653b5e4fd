"""The simulated analog substrate: device presets (devices), differentiable device noise
(noise), the analog operations the layers inject (analog), mapping and tiling onto fixed-size
crossbar arrays (crossbar), and the energy and latency model (energy)."""
