"""``torch-cnn bench``: torch_cnn against Keras, side by side, in one run, on the same shapes.

For one model and one device it measures, on random images of shape ``(N, 3, 32, 32)``
(Keras: ``(N, 32, 32, 3)``) resident on the device:

- **training throughput**: images/s over full optimizer steps (forward, loss, backward,
  update), at batch 32 (the seeds' recipe) and at a large batch;
- **inference throughput**: images/s of the model's forward pass at the large batch, every
  output copied into one result tensor (what Keras's ``predict`` returns);
- **peak memory**: the process's peak RSS during the timed repeats on the CPU (Linux
  ``VmHWM``, reset after the warm-up; see ``benchmarks.common.PeakRSS``), the allocator's
  ``max_memory_allocated`` on CUDA;

for each of:

- ``torch_cnn`` / ``parity``: ``torch_cnn.train.fit`` with its defaults (float32, NCHW,
  Keras's Adam at lr 1e-3, eager), and ``model(x)`` under ``torch.inference_mode``;
- ``torch_cnn`` / ``fast``: the options that make it fastest while accuracy holds
  (``fast_settings``: channels_last, bf16 autocast where the hardware computes in bf16,
  fused Adam, ``torch.compile`` for inference, a whole-step CUDA graph on a GPU), trained
  at the recipe's batch on the CPU and the large batch on CUDA (``RunConfig.settings``),
  the learning rate scaled by the square root of batch / 32;
- ``keras_tensorflow`` / ``default``, ``xla`` and ``multistep``: Keras 3 on TensorFlow, ``fit``
  and ``predict`` with compile's defaults, with XLA, and with ``steps_per_execution``
  (``benchmarks/keras_side.py``, run in a process of its own);
- ``keras_torch`` / ``default``: Keras 3 on its torch backend, in a process of its own.

Each measurement runs ``warmup_steps`` batches twice first: the first call (tracing,
``torch.compile``, CUDA-graph capture, XLA compilation, lazy initialisation) is reported as
``compile_s``, the second as ``warmup_s``; neither counts. Then ``repeats`` passes over
``images`` images (rounded up to whole batches) are timed one by one (the GPU synchronised
at the end of each) and reported as median, min and max images/s. Every framework uses the
same number of intra-op threads (``--threads``, default: torch's default, one per core).

Training with ``fit`` includes what ``fit`` does every epoch and every step: a fresh
permutation, gathering each batch from the resident data, and its running loss and accuracy
(Keras's ``fit`` tracks both too). FLOP/s are derived from ``forward_flops`` (convolutions
and dense layers, 2 FLOPs per multiply-add; training counted as 3× the forward pass) and set
against an estimate of the hardware's peak (``cpu_peak``).

``--accuracy`` also trains the model for 10 epochs on CIFAR-10 in parity and in fast mode,
over several seeds, and reports both test accuracies: fast mode must not buy its speed with
accuracy. ``--profile`` appends the top operators of a few training steps in each mode.

The package sits beside ``torch_cnn``, not in it (as timm's ``benchmark.py``): run it from a
checkout as ``python -m benchmarks`` or ``torch-cnn bench``. Its modules, bottom up:

- ``common``: the record schema and what both sides share (standard library only);
- ``keras_side``: the Keras process (imports neither torch nor torch_cnn);
- ``hardware``: the CPU's description and peak, the measured matmul rate, model FLOPs;
- ``cuda_graph``: ``CudaGraphTrainer``, the whole-step CUDA-graph training engine;
- ``torch_side``: the two modes' settings, the timing harness, torch_cnn's measurements;
- ``runner``: one run over every framework (the Keras ones in subprocesses);
- ``accuracy``: the fast-mode accuracy study; ``report``: the markdown and the README block;
- ``cli``: the command line (``torch_cnn.cli`` registers it as ``torch-cnn bench``).

This package's ``__init__`` imports nothing: the Keras process loads it.
"""
