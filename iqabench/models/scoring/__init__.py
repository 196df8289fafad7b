"""The MLLM scoring library every MLLM method imports (never another method):
- options: BackendOptions (the one backend option shape) and SoftmaxOptions (question, words or
  levels), protocol_options (a class whose defaults are a protocol);
- protocols: the zero-shot protocols as data (PROTOCOLS);
- scorer: SoftmaxScorer, the word and level scorer (AnswerWordMissing: an answer word a served
  model did not return); normalize: the pixel normalisers;
- formulas: answer-token logits -> scores, and re-scoring of stored logits;
- availability: backend_unavailable, the cheap check that the backend can be loaded here;
  weights_on_disk, whether its weights are on this machine.
No module here imports torch at import time."""
from iqabench.models.scoring.availability import backend_unavailable, weights_on_disk
from iqabench.models.scoring.formulas import (
                                             WORD_BANK,
                                             level_score,
                                             rescore_levels,
                                             rescore_words,
                                             word_set_score,
)
from iqabench.models.scoring.normalize import (
                                             IMAGENET_MEAN,
                                             IMAGENET_STD,
                                             Normalization,
                                             pixel_normalizer,
)
from iqabench.models.scoring.options import (
                                             BackendOptions,
                                             SeedPipelineOptions,
                                             SoftmaxOptions,
                                             protocol_options,
                                             split_list,
)
from iqabench.models.scoring.protocols import (
                                             PROTOCOLS,
                                             QALIGN_LEVELS,
                                             QALIGN_TEMPLATE,
                                             QALIGN_WEIGHTS,
                                             QBENCH_PROMPT,
                                             SEED_PROMPT,
                                             Protocol,
)
from iqabench.models.scoring.scorer import AnswerWordMissing, SoftmaxScorer, mllm_info

__all__ = [
                                             "IMAGENET_MEAN",
                                             "IMAGENET_STD",
                                             "PROTOCOLS",
                                             "QALIGN_LEVELS",
                                             "QALIGN_TEMPLATE",
                                             "QALIGN_WEIGHTS",
                                             "QBENCH_PROMPT",
                                             "SEED_PROMPT",
                                             "WORD_BANK",
                                             "AnswerWordMissing",
                                             "BackendOptions",
                                             "Normalization",
                                             "Protocol",
                                             "SeedPipelineOptions",
                                             "SoftmaxOptions",
                                             "SoftmaxScorer",
                                             "backend_unavailable",
                                             "weights_on_disk",
                                             "level_score",
                                             "mllm_info",
                                             "pixel_normalizer",
                                             "protocol_options",
                                             "rescore_levels",
                                             "rescore_words",
                                             "split_list",
                                             "word_set_score",
]
