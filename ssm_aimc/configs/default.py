r"""Default config: a float S4D classifier on scikit-learn's digits (L=64), CPU-sized.

Every field of every experiment lives here with a comment; experiment configs import this
file and override a few fields.

  python launch.py --config=configs/default.py --workdir=runs/default
  python launch.py --config=configs/default.py:smoke --workdir=/tmp/smoke   # seconds

Measured (README "Results"): test accuracy 98.33 +- 0.56 % over seeds 0, 1, 2 (97.78 % at
worst), 165-253 s per run on the 2-core CPU while a second training job shared it.

The config is read once into the typed `ssm_aimc.experiment.Experiment` (every value
checked, an unknown key an error). Two vocabularies hold for every field below:
- bit widths: 0 means "not set" (no converter; a tensor group that inherits its section's
  width), 1 binary, 2 ternary, >= 16 float (exactly the unquantized path);
- noise scales: a `noise_scale` multiplies the device's programming AND read noise,
  `prog_noise_scale(s)` the programming noise alone, `read_noise_scale` the read noise alone.
"""

import dataclasses

import ml_collections

from ssm_aimc import quant
from ssm_aimc.hardware import energy


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds parameter init, dropout and the batch order.
  config.model_name = "s4d"  # Registry name in ssm_aimc.models.MODELS.

  config.data = ml_collections.ConfigDict()
  # digits | mnist1d | mnist5k | smnist | psmnist | scifar | hd | pathfinder.
  config.data.task = "digits"
  # Folder with the local files: MNIST IDX (smnist, psmnist), CIFAR-10 batches (scifar),
  # Heidelberg Digits audio/ and lists (hd), LRA's pathfinder<res>/ (pathfinder).
  config.data.data_dir = ""
  config.data.seed = 0  # Seed of the train/val/test split and of psmnist's permutation.
  config.data.val_fraction = 0.1  # Share of the training set held out for validation.
  config.data.test_fraction = 0.2  # Test share, for tasks without an official test split.
  config.data.normalize = True  # Standardise inputs with train-split mean/std.
  config.data.mnist1d_samples = 5000  # Samples generated for mnist1d (4:1 train:test).
  config.data.grayscale = False  # scifar: one luma input instead of R, G, B (QS4D's sCIFAR).
  config.data.hd_language = "english"  # hd: english (classes 0-9) | german (10-19) | all.
  config.data.hd_classes = ()  # hd: classes kept, relabelled 0..k-1; () all. (0, 1): binary.
  # Every task but hd: the classes kept, relabelled 0..k-1 by rank; () all. (0, 1): binary.
  config.data.classes = ()
  config.data.hd_subsample = 1  # hd: keep every k-th audio sample (8: 6966 steps).
  config.data.pathfinder_resolution = 32  # pathfinder: image size, 32 | 64 | 128 | 256.
  # pathfinder: curv_baseline (easy) | curv_contour_length_9 | curv_contour_length_14 (hard).
  config.data.pathfinder_difficulty = "curv_baseline"

  config.model = ml_collections.ConfigDict()
  config.model.d_model = 64  # H, channels per block.
  config.model.n_layers = 4  # Residual S4D blocks.
  config.model.d_state = 32  # N, real state size per channel (N/2 complex modes).
  config.model.dropout = 0.1  # Dropout inside each block.
  config.model.pooling = "mean"  # mean | last: how the sequence becomes one vector.
  config.model.prenorm = True  # The norm before the SSM (True) or after the residual.
  # layer | batch: LayerNorm, or BatchNorm over batch and time (running statistics in the
  # "batch_stats" collection, folded into a per-channel scale and shift at inference).
  config.model.norm = "layer"
  config.model.residual = True  # Each block adds its input to its output (skip connection).
  config.model.activation = "glu"  # glu | relu: each block's output activation.
  # lin | inv | lin_quarter | real: S4D-Lin, S4D-Inv, S4D-Lin with Im a_n = pi/4 n (QS4D's),
  # or S4D-Real (a_n = -(n + 1), Im a held at 0: a decay-only recurrence).
  config.model.a_init = "lin"
  config.model.discretization = "zoh"  # zoh | bilinear.
  config.model.method = "auto"  # auto | fft | associative | sequential (same numbers).
  config.model.step_min = 1e-3  # Smallest initial step size.
  config.model.step_max = 1e-1  # Largest initial step size.
  config.model.train_b = True  # Learn the SSM input vector B (else fixed at 1).

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 1e-2  # Peak learning rate of AdamW.
  config.optimizer.weight_decay = 0.01  # Decoupled weight decay (default group).
  config.optimizer.warmup_epochs = 1.0  # Linear warm-up, in epochs.
  config.optimizer.end_lr_fraction = 0.0  # Cosine decay ends at this fraction of the peak.
  config.optimizer.grad_clip = 1.0  # Global-norm clip; 0 disables.
  config.optimizer.b1 = 0.9  # Adam beta1.
  config.optimizer.b2 = 0.999  # Adam beta2.
  # (regex on the 'a/b/c' parameter path, lr multiplier, weight decay); first match wins.
  # As in S4/S5: the SSM's step and A get a 10x lower learning rate and no weight decay.
  # Quantizer ranges/steps: full learning rate, no decay.
  config.optimizer.rules = (
    (r"s4d/(log_step|log_neg_re_a|im_a)$", 0.1, 0.0),
    (r"(input_range|kernel_scale)$", 1.0, 0.0),
  )

  # Quantization-aware training (ssm_aimc.quant). Disabled: the float model, exactly.
  config.quant = ml_collections.ConfigDict()
  config.quant.enabled = False  # Fake-quantize in the forward pass (QAT; PTQ in evaluate).
  config.quant.weight_bits = 8  # Weights: encoder, b_bar, c, d, GLU dense, decoder (qs4d: log_dt).
  config.quant.act_bits = 8  # Inputs of every matrix product; also biases and norms.
  config.quant.a_bar_bits = 8  # The recurrent coefficient (the sensitive one): a_bar, or qs4d's A.
  config.quant.mode = "tensor"  # tensor | channel (absmax steps) | lsq (learned steps).
  config.quant.a_bar_param = "polar"  # polar | cartesian: stable a_bar parameterisation.
  # ssm_aimc (ours) | qs4d (the QS4D authors': per-tensor absmax, b bits = 2^b states, so
  # 1 is ternary; A, log_dt, C quantized before discretising, b_bar and d float; the groups
  # of each: quant.SCHEME_GROUPS).
  config.quant.scheme = "ssm_aimc"
  # Per-group bit widths overriding the three above; 0 = inherit. 1 binary (qs4d: ternary),
  # 2 ternary, >= 16 off (float). Groups: ssm_aimc.quant.GROUPS; qs4d's state: sequential only.
  config.quant.group_bits = ml_collections.ConfigDict({g: 0 for g in quant.GROUPS})

  # Analog in-memory computing (ssm_aimc.hardware). Disabled: the digital model, exactly.
  # Enabled: every weight group runs on the simulated device, evaluated over noise seeds
  # after training (and in --mode=evaluate, on any checkpoint); with `train` also during
  # training (noise-aware training: fresh programming noise every step).
  config.hardware = ml_collections.ConfigDict()
  config.hardware.enabled = False  # Simulate the analog substrate at evaluation.
  # pcm_like | rram_taox | ideal | reram_wan2022(_1d, _2d) | reram_cmo (devices.DEVICES;
  # the reram_* presets are aihwkit's fits at one time: t_inference must be theirs).
  config.hardware.device = "pcm_like"
  config.hardware.device_csv = ""  # CSV (target_us, mean_us, std_us): a measured device.
  config.hardware.mapping = "column"  # column | tensor: where g_max maps (largest |w|).
  # The largest |w| maps to this fraction of the conductance range (< 1: a margin below
  # g_max; the device noise grows relative to the weights).
  config.hardware.g_max_fraction = 1.0
  config.hardware.recurrence = "digital"  # digital | residual | direct: how a_bar is held.
  config.hardware.prog_noise_scale = 1.0  # x the device's programming-noise std.
  config.hardware.read_noise_scale = 1.0  # x the device's read-noise std.
  # product: fresh read noise at every matrix product (exact); forward: one draw on the
  # weights per forward pass (cheaper; noise-aware training uses it).
  config.hardware.read_noise_draw = "product"
  config.hardware.drift = True  # Conductance drift (devices that drift, e.g. PCM).
  config.hardware.drift_compensation = True  # Global drift compensation per array.
  config.hardware.t_inference = 3600.0  # Seconds from programming to inference.
  config.hardware.stuck_min = 0.0  # Fraction of devices stuck at g_min.
  config.hardware.stuck_max = 0.0  # Fraction of devices stuck at g_max.
  config.hardware.levels = 0  # Conductance levels per device; 0 = the device's own.
  config.hardware.dac_bits = 0  # Input DAC width; 0 = no DAC (ideal inputs).
  config.hardware.adc_bits = 0  # Output ADC width; 0 = no ADC (ideal outputs).
  config.hardware.adc_bound = 12.0  # ADC range, in units of the full-scale output.
  config.hardware.output_noise = 0.0  # Additive output noise, same units.
  # The QS4D authors' weight noise: std = a_noise x (max - min) of the tensor over the layer
  # (real and imaginary parts apart), a fresh draw every forward pass, on what a_noise_on
  # names: a (continuous-time A, theirs) | a_bar | c | weights (A, C and dense kernels).
  # With hardware.device=ideal it is the only perturbation.
  config.hardware.a_noise = 0.0
  config.hardware.a_noise_on = "a"
  config.hardware.train = False  # Noise-aware training (needs enabled).
  config.hardware.ramp_epochs = 0.0  # Noise ramps linearly from 0 over these epochs.
  config.hardware.eval_seeds = 20  # Simulated chips (noise seeds) per evaluation.
  config.hardware.eval_seed = 0  # Seed of the chips' keys (same chips for every model).
  config.hardware.seeds_per_call = 20  # Chips evaluated together by one vmapped call.
  # Evaluate also at these programming-noise scales, read noise as set above
  # (accuracy-vs-noise table and plot).
  config.hardware.prog_noise_scales = ()

  # Structured pruning of state modes (ssm_aimc.prune) during a fine-tune of a trained
  # model (init_checkpoint); the pruned, physically smaller model goes to workdir/pruned.
  config.prune = ml_collections.ConfigDict()
  config.prune.enabled = False  # Prune state modes while training.
  config.prune.ratio = 0.5  # Fraction of the state modes removed, in [0, 1).
  config.prune.score = "h2"  # h2 (share of the H2 norm) | magnitude (|c| |b_bar|).
  config.prune.scope = "channel"  # channel (same modes per channel) | layer | global.
  config.prune.schedule = "oneshot"  # oneshot | gradual (cubic, masks per epoch).
  config.prune.end_fraction = 0.5  # gradual: share of training at which ratio is reached.
  config.prune.unit = "mode"  # mode (smaller d_state) | channel (whole channels: smaller d_model).
  config.prune.method = "score"  # score (ratio, lowest first) | greedy (QS4D: within tolerance).
  config.prune.greedy_kind = "structured"  # greedy: structured (whole modes) | unstructured.
  config.prune.tolerance_points = 1.0  # greedy: validation accuracy points pruning may cost.

  # --mode=deploy (ssm_aimc.deploy): the best checkpoint programmed onto a simulated chip
  # and run step by step. The device model (noise scales, t_inference, drift, mapping,
  # recurrence) comes from `hardware` above; the chip's converters and arrays from here.
  config.deploy = ml_collections.ConfigDict()
  config.deploy.devices = ("pcm_like", "rram_taox")  # Presets to deploy on ("" = hardware.device).
  config.deploy.dac_bits = 8  # Input DAC width of every array (>= 16: ideal).
  config.deploy.adc_bits = 8  # Output ADC width of every array piece (>= 16: ideal).
  config.deploy.periphery_bits = 16  # Stored digital values (>= 16: float).
  config.deploy.headroom = 1.0  # Calibrated converter range = largest |value| x this.
  config.deploy.read_rng = "hash"  # Read-noise source: hash (fast) | threefry.
  config.deploy.tile_rows = 64  # Array size: 64x64 as the predecessor chip; 256, 512 ...
  config.deploy.tile_cols = 64
  config.deploy.differential = True  # G+/G- pair per weight, one ADC per pair.
  config.deploy.mapping = "diagonal"  # S4D blocks: diagonal (1 read) | packed (fewer tiles).
  # diagonal: every matrix's pieces placed together, first fit, so that small matrices
  # share tiles on disjoint rows and columns (False: each matrix on tiles of its own).
  config.deploy.share_tiles = False
  config.deploy.seeds = 20  # Chips (noise seeds) per device.
  config.deploy.seeds_per_call = 5  # Chips simulated together by one vmapped call.
  config.deploy.folder = "deploy"  # Results go to workdir/<folder>.
  config.deploy.drift_times = ()  # Also evaluate at these t_inference (s): accuracy vs time.
  # off | decay: with hardware.recurrence on the arrays, each mode's programmed 2x2 block is
  # measured after programming and the new state is trimmed digitally to the trained decay
  # |a_bar| (chip.recurrence_gains; README "The recurrence on the crossbar").
  config.deploy.recurrence_gain = "off"
  config.deploy.gain_reads = 0  # Reads averaged per measured weight; 0 = exact weights.
  # Seconds after programming at which the trim is measured (< 0: at each t_inference).
  config.deploy.gain_time_s = -1.0
  # Energy constants (ssm_aimc.hardware.energy.EnergyConstants; docs/design.md §2), overridable
  # one by one, e.g. --config.deploy.energy.adc_8bit_pj=1.0.
  config.deploy.energy = ml_collections.ConfigDict(dataclasses.asdict(energy.EnergyConstants()))

  config.batch_size = 64  # Training batch size.
  config.eval_batch_size = 256  # Evaluation batch size (last batch padded).
  config.num_epochs = 60  # Passes over the training split.
  config.log_every_steps = 20  # Train metrics to metrics.jsonl every this many steps.
  config.checkpoint_every_epochs = 1  # Save the last-k checkpoint every this many epochs.
  config.keep_checkpoints = 2  # How many recent checkpoints to keep (plus the best).
  config.init_checkpoint = ""  # Workdir whose best params initialise a fresh run.
  config.progress_bar = True  # A bar per long stage on a terminal, log lines off one.
  # Also write the metrics as TensorBoard events in workdir/tensorboard/ (the [tensorboard]
  # extra).
  config.log_tensorboard = False

  if variant == "smoke":
    config.model.d_model = 16
    config.model.n_layers = 2
    config.model.d_state = 8
    config.num_epochs = 2
    config.batch_size = 32
    config.log_every_steps = 5
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of configs/default.py; valid: smoke.")
  return config
