"""Training of segmentation models: one trainer core, extended by objectives (see :mod:`.objective`).

Modules, one concept each: :mod:`.settings` (config sections), :mod:`.optim` (optimizers and parameter
groups), :mod:`.schedulers`, :mod:`.clipping`, :mod:`.loss` (permutation-invariant powerset NLL),
:mod:`.metrics` (DER counts), :mod:`.objective` (what is optimised; the extension point), :mod:`.loaders`
(seeded, sharded data order), :mod:`.checkpoint` (atomic checkpoints, best, retention, RNG states),
:mod:`.run_log` (writing metrics.jsonl, TensorBoard, curves), :mod:`.run_dir` (the experiment directory:
reading metrics.jsonl, choosing and averaging epochs, checkpoint paths), :mod:`.loop` (the trainer),
:mod:`.recipe` (the steps of a training run: :func:`~.recipe.train`).

Config sections (TOML; ``diarizen-lab train -C conf.toml`` or ``recipes/diar_ssl/run_dual_opt.py``)::

    [meta]               name (required), exp_dir = "exp", seed = 0, root (config root, see diarizen_lab.config)
                         -> the run writes <exp_dir>/<name>/
    [task]               sample_rate = 16000, chunk_size = 8.0 (seconds), max_speakers_per_chunk = 4,
                         max_speakers_per_frame = 2: handed to the model, the objective and both datasets
    [model]              block: path + [model.args], e.g. diarizen_lab.models.wavlm_conformer.WavLMConformer
                         (the recipe supplies task=)
    [objective]          block, default diarizen_lab.training.objective.PowersetObjective; distill-and-prune:
                         diarizen_lab.pruning.DistillPruneObjective (teacher, target_sparsity, ...)
    [train_dataset]      block, e.g. diarizen_lab.data.dataset.ChunkDataset (data_dir, chunk_shift, channel,
    [validation_dataset] resample); the recipe supplies task= and frames= (the model's frame geometry, or none
                         when the objective uses no labels)
    [dataloader]         batch_size = 8 (per process), num_workers = 0, pin_memory = true (on CUDA),
                         persistent_workers = true (with workers)
    [optimizer_small]    block over the WavLM parameters, e.g. path = "torch.optim.AdamW", args.lr = 2e-5
    [optimizer_big]      block over the other parameters, e.g. AdamW with args.lr = 1e-3
    [optimizer]          instead of the two above: one optimizer over every trainable parameter
                         (the recipe supplies params=; on CUDA fused=true when the class has it and args omit it)
    [scheduler_small]    kind = "constant" | "linear_warmup" | "warmup_cosine" | "warmup_linear",
    [scheduler_big]      warmup_steps = 0, min_lr_ratio = 0.0; stepped per optimizer update; absent: constant
    [scheduler]          (the schedule of [optimizer])
    [clipping]           mode = "fixed" | "adaptive" | "none", max_norm = 5.0 (fixed),
                         percentile = 90.0 and history = 1000 (adaptive)
    [trainer]            max_epochs (required), validation_interval = 1, gradient_accumulation_steps = 1,
                         mixed_precision = "no" | "bf16" | "fp16", patience = 0 (validations without
                         improvement before stopping; 0: never), max_nonfinite_steps = 10, log_interval = 10,
                         validate_at_start = false (an epoch-0 row for the untrained model),
                         find_unused_parameters = false, compile = false, allow_tf32 = true
    [checkpoint]         keep_last_n = 5 (0: all), keep_best_n = 5 (kept for averaging), monitor = "val/der",
                         mode = "min" | "max"
    [finetune]           init_from = model.pt | checkpoint dir | experiment dir (weights only; trained for the
                         same [task])

Experiment directory: ``config.toml`` (resolved), ``metrics.jsonl``, ``curves.png``, ``tb/``,
``checkpoints/epoch_NNNN/{model.pt,training_state.pt}`` and ``checkpoints/best``.
"""
