"""``torch-cnn bench``: torch_cnn against Keras and onnxruntime, side by side, in one run, on the
same shapes and the same weights.

For one model and one device it measures, on random images of shape ``(N, 3, 32, 32)``
(Keras and onnxruntime: ``(N, 32, 32, 3)``) resident on the device:

- **training throughput**: images/s over full optimizer steps (forward, loss, backward,
  update), at batch 32 (the seeds' recipe) and at a large batch;
- **inference throughput**: images/s of the model's forward pass at the large batch, every
  output copied into one result tensor (what Keras's ``predict`` returns);
- **batch-1 latency**: µs per call of one image, each repeat the median of many calls;
- **peak memory**: the process's peak RSS during the timed repeats on the CPU (Linux
  ``VmHWM``, reset before each repeat; see ``benchmarks.common.PeakRSS``), the allocator's
  ``max_memory_allocated`` on CUDA;
- **max |Δ| against Keras** of every inference and latency row: each framework's outputs on
  the same inputs, from the same weights (``benchmarks.prepare``), against Keras on
  TensorFlow's;

for each of:

- ``torch_cnn`` / ``default``: what a user gets without asking: ``model(x)`` under
  ``torch.inference_mode`` and ``torch_cnn.train.fit`` with its defaults (float32, the model's
  default layout, channels_last inside the model where it is faster, Keras's Adam at lr 1e-3,
  eager);
- ``torch_cnn`` / ``nchw``: the same on the plain NCHW path (``memory_format="contiguous"``),
  the default before issue 15;
- ``torch_cnn`` / ``compiled``: the default model under ``torch.compile``, float32, inference
  only (the opt-in switch for long inference runs; not at batch 1, where it does not pay);
- ``torch_cnn`` / ``fast``: the opt-in options that make it fastest while accuracy holds
  (``fast_settings``: channels_last, bf16 autocast where the hardware computes in bf16,
  fused Adam, ``torch.compile`` for inference, a whole-step CUDA graph on a GPU), trained
  at the recipe's batch on the CPU and the large batch on CUDA (``RunConfig.settings``),
  the learning rate scaled by the square root of batch / 32;
- ``keras_tensorflow`` / ``default``, ``xla`` and ``multistep``: Keras 3 on TensorFlow, ``fit``
  and ``predict`` with compile's defaults, with XLA, and with ``steps_per_execution``, and
  batch-1 latency of ``predict_on_batch`` and ``model(x)`` (``benchmarks/keras_side.py``);
- ``keras_torch`` / ``default``: Keras 3 on its torch backend;
- ``onnxruntime`` / ``default``: onnxruntime's CPU provider on Keras's own ONNX export
  (``benchmarks/ort_side.py``);

and, beside the model, the converted models ``residual_bn`` (the zoo's) and ``resnet_bn`` (a
slightly bigger residual BatchNorm network, ``benchmarks.converted``): ``torch_cnn.from_keras``
against Keras and onnxruntime, inference and latency.

The rows interleave: a run is ``repeats`` rounds, each timing every row once (torch_cnn's in
this process, set up once; Keras's and onnxruntime's in a fresh process per round), so that a
slow stretch of a shared machine hits every framework alike; each row reports its median
(and range) over the rounds. Each measurement is warmed up first: the first call (tracing,
``torch.compile``, CUDA-graph capture, XLA compilation, lazy initialisation) is reported as
``compile_s``, the second as ``warmup_s``; neither counts. Every framework uses the same
number of intra-op threads (``--threads``, default: torch's default, one per core).

Training with ``fit`` includes what ``fit`` does every epoch and every step: a fresh
permutation, gathering each batch from the resident data, and its running loss and accuracy
(Keras's ``fit`` tracks both too). FLOP/s are derived from ``forward_flops`` (convolutions
and dense layers, 2 FLOPs per multiply-add; training counted as 3× the forward pass) and set
against the measured matmul rate (and an estimate of the hardware's peak, ``cpu_peak``).

``--accuracy`` also trains the model for 10 epochs on CIFAR-10 in default and in fast mode,
over several seeds, and reports both test accuracies: fast mode must not buy its speed with
accuracy. ``--profile`` appends the top operators of default inference (large batch and one
image) and of default and fast training. ``python -m benchmarks.candidates`` measures the
candidate default paths themselves side by side (how the default was chosen).

The package sits beside ``torch_cnn``, not in it (as timm's ``benchmark.py``): run it from a
checkout as ``python -m benchmarks`` or ``torch-cnn bench``. Its modules, bottom up:

- ``common``: the record schema and what every side shares (standard library only);
- ``converted``: the Keras models the benchmark builds (imports nothing at load);
- ``prepare``: the shared files (Keras model, ONNX export, torch model, inputs and outputs);
- ``keras_side``: the Keras process (imports neither torch nor torch_cnn at load);
- ``ort_side``: the onnxruntime process (imports neither torch nor Keras);
- ``hardware``: the CPU's description and peak, the measured matmul rate, model FLOPs;
- ``cuda_graph``: ``CudaGraphTrainer``, the whole-step CUDA-graph training engine;
- ``torch_side``: the modes' settings, torch_cnn's rows, the profiles;
- ``runner``: one run over every framework, round by round (the others in subprocesses);
- ``accuracy``: the fast-mode accuracy study; ``report``: the markdown and the README block;
- ``candidates``: the side-by-side measurement of the candidate default paths;
- ``cli``: the command line (``torch_cnn.cli`` registers it as ``torch-cnn bench``).

This package's ``__init__`` imports nothing: the Keras process loads it.
"""
