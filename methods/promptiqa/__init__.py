"""PromptIQA (seed 003): a quality model that reads a prompt of k image-score pairs (ISPs) from a
dataset and scores that dataset's images accordingly, without retraining.

Modules: `model` (the network: MoNet ViT-B/8 visual encoder, ISP prompt encoder, ISPP and
image-prompt fusion, regressor), `prompt` (choosing the pairs, pixels, a user's prompt file),
`train` (the recipe: random groups, random scaling/flipping, L1, Adam + cosine, selection on val
SRCC, resumable state), `weights` (tensors-only files), `method` (the TrainableMethod).

Train and score on one dataset (the prompt is drawn from its train part)::

    iqabench train --method promptiqa --dataset DATASET -o backbone_weights=vit_b8.safetensors
    iqabench run   --method promptiqa --dataset DATASET -o backbone_weights=vit_b8.safetensors

`backbone_weights` is a timm-format ViT-B/8 file you downloaded yourself (for instance the
`model.safetensors` of `timm/vit_base_patch8_224.augreg_in21k_ft_in1k`); without it the backbone
starts from random weights, the fingerprint says `"init": "random"` and a warning is logged:
such scores are not the paper's. Nothing is ever downloaded. `-o backbone=vit_tiny` is the same
architecture on a 64-px, 32-wide ViT for tests and CPU trials.

Score a new dataset with a prompt of k labelled images and no retraining (the plugin use):
write a CSV beside the k images,

    image,score
    img_03.png,0.12
    img_17.png,0.55
    ...            (k rows; scores in [0, 1] on the scale to predict: min-max normalise raw MOS)

then score the new dataset with a trained model and that prompt:

    iqabench run --method promptiqa --dataset NEW --checkpoint results/checkpoints/.../promptiqa-<key> \\
        -o prompt_file=prompt/prompt.csv

or with the authors' released model (read as tensors only; it carries no prompt):

    iqabench run --method promptiqa --dataset NEW -o weights=best_model.pth.tar -o prompt_file=prompt/prompt.csv

k is the number of rows (the paper: 10; its Fig. 3 shows fewer pairs cost a little accuracy).
In Python, `method.setup(RunContext(prompt_source=SampleSource(...)))` of labelled samples (with
`target`) does the same, choosing the k = prompt_size pairs by `prompt_select` (interval | random,
seeded by `prompt_seed`) or the fixed `prompt_ids`; the runner gives the scored split's train
part that way. Without a prompt file or source, the prompt stored in the
checkpoint (drawn from the training dataset's train part) is used, and a warning says so when the
scored dataset is another one.
"""
from iqabench.methods.promptiqa.method import PromptIQA, PromptIQAOptions

__all__ = ["PromptIQA", "PromptIQAOptions"]
