"""The GPU stage: encoders, SSL pretraining with Group-DRO, and embedding extraction.

Only this stage imports torch/MONAI. One concept per module (nothing is imported here,
so ``import neurofeat.extract.<module>`` stays as light as that module):

Extraction (``neurofeat extract``, run by :mod:`neurofeat.runs.extract`)
    ``backbone``     the encoder to extract with (pretrained name, external checkpoint,
                     or the ``random`` floor: a randomly initialised encoder of a seed)
    ``radiomics``    the ``radiomics`` reference backbone (pyradiomics features in the
                     tumour or brain mask; no torch)
    ``extractor``    the extraction loop: batches -> embeddings -> store, resumable
    ``dry_run``      everything extraction needs, checked without extracting
    ``embed``        the forward pass of a batch (autocast/channels-last on GPU)
    ``dataset``      store patients as a dataset, preprocessed-volume cache, loader
    ``volumes``      reading and checking a patient's NIfTI scans
    ``preprocess``   the preprocessing pipeline and its hash
    ``perturb``      perturbations (contrast, Gibbs, bias field) for stability runs
    ``adapters``     external checkpoints (BrainIAC, MedicalNet, MONAI ResNet, SwinUNETR)

Pretraining (``neurofeat pretrain``, run by :mod:`neurofeat.runs.pretrain`)
    ``pretrain``        configuration, result and the trainer
    ``pretrain_data``   the training cohort, its groups and samplers
    ``pretrain_state``  the resumable state between epochs (no pickles)
    ``loss_curve``      the loss-curve figure
    ``methods``         SimCLR, MoCo, BYOL, DINO, MAE (per-sample losses)
    ``dro``             Group-DRO
    ``augment``         multi-view augmentations
    ``recipes``         named per-method CPU recipes (``--recipe cpu-demo``)

Shared
    ``encoders``     MONAI 3D ResNets and their configuration
    ``checkpoint``   backbone directories: safetensors weights + JSON card
    ``devices``      ``--device`` resolution and default loader workers
    ``distributed``  torchrun: the process group, rank helpers, collectives
"""
