"""mllm-prompt / mllm-prompt-fr: seed 001's prompting systems on any MLLM backend.

Options pick the system (standard | cot | in-context), the stimulus (single: NR, one image;
fr: reference + distorted image in one prompt, method mllm-prompt-fr; double: paired comparison) and
how the answer is read:
- answer=generate (the paper's): greedy text, parsed by parse.py. The raw answer is stored with each
  image (`answer`, `parsed`); an unparseable answer is counted (`parse_failures`) and that image is
  a recorded failure (ValueError) — never filled in. cot is one generation with the paper's
  "first detail ..., then assign a score" prompt.
- answer=logits (NOT in the paper): the level words' next-token distribution after "The quality
  of the image is" (single / fr; scale=level), or of "0"/"1"/"2" after "Result:" (double, a soft
  outcome); with system=cot the model's description is generated first and precedes the read-out.
Double stimulus: `prepare` samples `pairs_per_image` rounds of random pairings of the part's images
(seeded by `pair_seed`; presentation order random), asks each pair once, appends every comparison
(pair, order, raw answer, outcome) to a JSONL cache under cache_dir keyed by the fingerprint and the
image ids (a killed run resumes), and fits Bradley–Terry (bradley_terry.py); `score` returns each
image's centred log-strength. An image with no parsed comparison is a recorded failure.
Multiple stimulus (generate only): `prepare` draws, as the study's code does, `groups_per_image`
groups per image (the image first, then `group_size - 1` distinct others drawn at random with
`group_seed`), asks each group for a ranking (parse_ranking), appends each group's record (its
image ids together, raw answer, ranks or None) to a JSONL cache as above, and aggregates the
rankings as the study: pairwise win counts (a tie is a win for both) -> Thurstone Case V MAP ->
0..100 (thurstone.py). A malformed ranking is a recorded group failure (its images keep only their
other groups); an image with no parsed group is a recorded failure. mllm-prompt-fr -o stimulus=multiple
is the study's full-reference form: each group is distorted images of one reference, shown after it
(standard and cot; an image whose reference has fewer than group_size images in the part is in no
group, a recorded failure).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pydantic

from iqabench.api import Method, MethodInfo, RunContext, Sample, SampleSource, stable_hash
from iqabench.errors import IqaError
from iqabench.models.scoring import BackendOptions, backend_unavailable, split_list

from . import prompts
from .examples import Example, example_files, file_hash, read_examples
from .parse import parse_comparison, parse_ranking, parse_score

# max_new_tokens when not given: a short answer, or a description then a score
DEFAULT_TOKENS = {"standard": 16, "in-context": 16, "cot": 256}
RANK_TOKENS = {"standard": 64, "in-context": 64, "cot": 320}  # a ranking is "Score: [first: 0, second: 3, ...]"
LOGIT_PREFIX = "The quality of the image is"
COMPARE_PREFIX = "Result:"


class MllmPromptOptions(BackendOptions):
    """Seed 001's prompting systems: which system and stimulus, how the answer is read."""

    system: Literal["standard", "cot", "in-context"] = "standard"
    """standard, cot (describe, then score, in one generation) or in-context (k scored examples first)"""
    stimulus: Literal["single", "fr", "double", "multiple"] = "single"
    """single (NR), fr (reference + distorted: method mllm-prompt-fr), double (paired comparison) or
    multiple (a ranking of group_size images)"""
    answer: Literal["generate", "logits"] = "generate"
    """generate: parse the greedy text (the paper); logits: read the answer token's distribution"""
    scale: Literal["number", "level"] = "number"
    """number: a 0..100 score (the paper); level: excellent/good/fair/poor/bad"""
    attribute: str = "overall quality"
    """what 'in terms of [...]' names in the paper's prompts"""
    examples: str | None = None
    """in-context: a CSV with columns image, score (and reference for fr)"""
    examples_range: tuple[float, float] = (0.0, 100.0)
    """lo,hi of the example scores (higher-better), mapped to the prompt's 0..100"""
    k: int = pydantic.Field(1, ge=1, le=8)
    """in-context: examples (double: example pairs) per prompt, drawn once with example_seed"""
    example_seed: int = 0
    """in-context: which examples are drawn"""
    pairs_per_image: int = pydantic.Field(4, ge=1, le=64)
    """double: rounds of random pairings, i.e. comparisons per image"""
    pair_seed: int = 0
    """double: the seed of the pairings and of each pair's presentation order"""
    # Multiple stimulus only; left out of the run key at their defaults, so keys made before they existed hold.
    group_size: int = pydantic.Field(4, ge=2, le=8, exclude_if=lambda v: v == 4)
    """multiple: images ranked per prompt (the study: 4)"""
    groups_per_image: int = pydantic.Field(2, ge=1, le=64, exclude_if=lambda v: v == 2)
    """multiple: groups drawn for each image, which leads its groups (the study: 2)"""
    group_seed: int = pydantic.Field(20, exclude_if=lambda v: v == 20)
    """multiple: the seed of the groups' draw (the study's: 20)"""
    pair_aggregate: Literal["bradley-terry", "thurstone"] = pydantic.Field(
        "bradley-terry", exclude_if=lambda v: v == "bradley-terry")  # out of the run key at its default, as above
    """double: bradley-terry (with bt_prior) or thurstone (the study's: win counts, a tie a win for both,
    Thurstone Case V MAP on 0..100, as multiple stimulus)"""
    bt_prior: float = pydantic.Field(0.5, ge=0.0)
    """double: virtual comparisons per image with an average phantom (0 = plain MLE)"""
    max_new_tokens: int | None = pydantic.Field(None, ge=1, le=2048)
    """generated tokens (default 16; 256 for cot)"""

    @pydantic.field_validator("examples_range", mode="before")
    @classmethod
    def _range(cls, value: Any) -> Any:
        return split_list(value)

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if (self.system == "in-context") != (self.examples is not None):
            raise ValueError("system=in-context needs examples=CSV, and examples are only used by system=in-context")
        if self.answer == "logits" and self.stimulus == "multiple":
            raise ValueError("stimulus=multiple reads a ranking of several numbers: use answer=generate")
        if self.answer == "logits" and self.stimulus != "double" and self.scale != "level":
            raise ValueError("answer=logits reads one answer token: use scale=level (a 0..100 number spans several tokens)")
        if not self.attribute.strip():
            raise ValueError("attribute is empty")
        return self

    def tokens(self) -> int:
        return self.max_new_tokens or (RANK_TOKENS if self.stimulus == "multiple" else DEFAULT_TOKENS)[self.system]


class MllmPromptFROptions(MllmPromptOptions):
    stimulus: Literal["fr", "multiple"] = "fr"
    """fr: the reference and the distorted image in one prompt; multiple: the reference, then a ranking of
    group_size of its distorted images"""

    @pydantic.model_validator(mode="after")
    def _fr_multiple(self):
        if self.stimulus == "multiple" and self.system == "in-context":
            raise ValueError("mllm-prompt-fr stimulus=multiple takes system=standard or cot (in-context example "
                             "groups with references are not built)")
        return self


_WEIGHTS = "MAGAer13/mplug-owl2-llama2-7b (~16 GB), or any -o backend=ARCH -o backend_path=DIR"


class MllmPrompt(Method):
    name: ClassVar[str] = "mllm-prompt"
    info: ClassVar[MethodInfo] = MethodInfo(
        kind="zero-shot", higher_better=True, needs_weights=_WEIGHTS, needs_gpu=True, extra="mllm",
        description="Seed 001's prompting systems on any MLLM backend: -o system=standard|cot|in-context, "
                    "-o stimulus=single|double|multiple (paired comparisons -> Bradley-Terry; rankings of "
                    "group_size images -> the study's Thurstone aggregate); a generated 0-100 score or "
                    "level parsed from the text, parse failures counted and recorded. FR: mllm-prompt-fr.")
    Options: ClassVar[type[MllmPromptOptions]] = MllmPromptOptions

    def __init__(self, options=None):
        super().__init__(options)
        o = self.options
        if o.stimulus == "fr" and not self.info.needs_reference:
            raise IqaError("stimulus=fr needs each image's reference: use method mllm-prompt-fr")
        self.backend: Any = None
        self.examples: list[Example] = []
        self._memo: dict[str, tuple[str | None, float | None]] = {}  # id -> (raw answer, score) of the last batch
        self._extras: dict[str, dict[str, Any]] = {}
        self._failed: set[str] = set()
        self.queries_made = 0
        self.last_queries: list[Any] = []  # the Query objects of the last backend call (inspection, tests)
        self._strengths: dict[str, float] | None = None
        self._pair_stats: dict[str, Any] = {}  # double and multiple: what prepare() asked and read
        self._token_ids: list[int] | None = None
        self._ungrouped: set[str] = set()  # FR multiple: too few images share the reference

    # -- life cycle ---------------------------------------------------------------------
    @classmethod
    def check_available(cls, options=None) -> str | None:
        o = options if options is not None else cls.Options()
        if o.examples is not None and not Path(o.examples).expanduser().is_file():
            return f"examples={o.examples}: no such file"
        return backend_unavailable(o)

    @classmethod
    def option_files(cls, options) -> dict[str, Path]:
        return {"examples": Path(options.examples)} if options.examples else {}

    @classmethod
    def named_files(cls, options) -> dict[str, Path]:
        if not options.examples:
            return {}
        images = example_files(options.examples, need_reference=options.stimulus == "fr")
        return {f"examples:{k}": v for k, v in images.items()}

    @classmethod
    def contract_options(cls, workdir):
        """The tiny random Owl2 reads the answer from logits: its random generations would not parse."""
        from iqabench.models.tiny import tiny_model_path

        return {"backend_path": tiny_model_path("owl2", workdir), "answer": "logits", "scale": "level"}

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        from iqabench.models.backend import load_backend

        if self.backend is not None:
            return
        o = self.options
        backend = load_backend(o.backend_spec(), self.device)
        several = o.stimulus != "single" or o.system == "in-context"
        if several and not getattr(backend, "multi_image", False):
            raise IqaError(f"backend {o.backend}: takes one image per prompt, so stimulus={o.stimulus} "
                           f"system={o.system} (several images per prompt) cannot run on it")
        if o.examples is not None:
            self.examples = read_examples(o.examples, o.examples_range, need_reference=o.stimulus == "fr")
            if o.stimulus == "double" and len({e.score for e in self.examples}) < 2:
                raise IqaError(f"examples={o.examples}: double stimulus needs examples with different scores")
            distinct = len({e.score for e in self.examples})
            if o.stimulus == "multiple" and distinct < o.group_size:
                raise IqaError(f"examples={o.examples}: multiple stimulus ranks {o.group_size} examples with different "
                               f"scores; found {distinct} different scores")
            if o.stimulus == "single" and len(self.examples) < o.k:
                raise IqaError(f"examples={o.examples}: {len(self.examples)} examples for k={o.k}")
        if o.answer == "logits":
            words = ("1", "0", "2") if o.stimulus == "double" else prompts.LEVELS
            ids = [backend.token_id(w) for w in words]
            if len(set(ids)) != len(ids):
                raise IqaError(f"{o.backend_path}: the answer words {', '.join(words)} share first tokens {ids}")
            self._token_ids = ids
        self.backend = backend

    # -- prompts ------------------------------------------------------------------------
    def _context(self) -> list[tuple[Any, Any, Any]]:
        """The in-context examples every prompt carries: k drawn once (example_seed)."""
        o = self.options
        if o.system != "in-context":
            return []
        rng = random.Random(o.example_seed)
        if o.stimulus == "multiple":  # k groups of distinct scores, ranked 0 (lowest) .. n-1 by score
            groups = []
            while len(groups) < o.k:
                group = rng.sample(self.examples, o.group_size)
                if len({e.score for e in group}) == o.group_size:
                    order = sorted(range(o.group_size), key=lambda i: group[i].score)
                    ranks = [order.index(i) for i in range(o.group_size)]
                    groups.append(([e.image for e in group], ranks))
            return groups
        if o.stimulus == "double":
            pairs = []
            while len(pairs) < o.k:
                a, b = rng.sample(self.examples, 2)
                if a.score != b.score:
                    pairs.append((a.image, b.image, 1 if a.score > b.score else 0))
            return pairs
        return [(e.image, e.score, e.reference) for e in rng.sample(self.examples, o.k)]

    def single_queries(self, samples: Sequence[Sample]) -> list[Any]:
        o = self.options
        context = self._context()
        out = []
        for s in samples:
            if o.stimulus == "fr" and s.reference is None:
                raise IqaError(f"{s.id}: no reference image (stimulus=fr needs a dataset with references)")
            out.append(prompts.single_query(s.image, o.attribute, o.scale, o.system,
                                            reference=s.reference if o.stimulus == "fr" else None, examples=context))
        return out

    def pair_queries(self, pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
        context = self._context()
        return [prompts.double_query(a, b, self.options.attribute, self.options.system, examples=context)
                for a, b in pairs]

    def group_queries(self, groups: Sequence[Sequence[Any]], references: Sequence[Any] | None = None) -> list[Any]:
        context = self._context()
        references = references if references is not None else [None] * len(groups)
        return [prompts.multiple_query(images, self.options.attribute, self.options.system, examples=context,
                                       reference=ref) for images, ref in zip(groups, references)]

    def _ask(self, queries: list[Any], prefix: str, words_score) -> tuple[list[str | None], list[float | None]]:
        """Raw answers and read-outs (None = unparseable) for a batch of queries."""
        import dataclasses

        import torch

        o = self.options
        self.last_queries = list(queries)
        self.queries_made += len(queries)
        with torch.no_grad():
            if o.answer == "generate":
                answers = self.backend.answers(queries, max_new_tokens=o.tokens())
                return list(answers), [words_score(a) for a in answers]
            described = [""] * len(queries)
            if o.system == "cot":  # the model's own analysis first, then the one-token read-out
                described = self.backend.answers(queries, max_new_tokens=o.tokens())
                queries = [dataclasses.replace(q, answer_prefix=f"{d} {prefix}".strip()) for q, d in zip(queries, described)]
            else:
                queries = [dataclasses.replace(q, answer_prefix=prefix) for q in queries]
            self.last_queries = list(queries)
            probs = torch.softmax(self.backend.logits(queries)[:, self._token_ids].float(), dim=-1).cpu().numpy()
        if o.stimulus == "double":  # P(first better) with a tie as half a win
            values = [float(p[0] + p[2] / 2.0) for p in probs]
        else:
            values = [float(p @ prompts.LEVEL_WEIGHTS) for p in probs]
        return [d or None for d in described], values

    # -- scoring ------------------------------------------------------------------------
    def score(self, samples: Sequence[Sample]) -> list[float]:
        if self.options.stimulus in ("double", "multiple"):
            return [self._strength(s.id) for s in samples]
        if self.backend is None:
            self.setup(self.ctx)
        todo = [s for s in samples if s.id not in self._memo]
        if todo:
            if len(samples) > 1:
                self._memo = {}
            prefer = self.options.scale
            answers, values = self._ask(self.single_queries(todo), LOGIT_PREFIX, lambda a: parse_score(a, prefer))
            for s, a, v in zip(todo, answers, values):
                self._memo[s.id] = (a, v)
                self._extras[s.id] = {"answer": a, "parsed": v}
                if v is None:
                    self._failed.add(s.id)
        out = []
        for s in samples:
            answer, value = self._memo[s.id]
            if value is None:  # the runner re-scores the batch image by image from the memo: this image fails
                raise ValueError(f"no score could be read from the answer {answer[:200]!r}")
            out.append(value)
        return out

    def _strength(self, sid: str) -> float:
        if self._strengths is None:
            raise IqaError(f"stimulus={self.options.stimulus}: the comparisons are made in prepare(), which has not run")
        if sid not in self._strengths:
            if sid in self._ungrouped:
                raise ValueError(f"fewer than group_size={self.options.group_size} images of this part share its "
                                 f"reference, so it is in no ranking group")
            if self.options.stimulus == "multiple":
                raise ValueError("no parsed ranking involves this image, so it has no aggregate score")
            raise ValueError("no parsed comparison involves this image, so it has no Bradley-Terry score")
        return self._strengths[sid]

    # -- double stimulus ------------------------------------------------------------------
    def sample_pairs(self, ids: Sequence[str]) -> list[tuple[int, str, str]]:
        """(round, first id, second id): each round a seeded random pairing of all images (an odd one
        out is paired with the round's first image); the shuffle also sets the presentation order."""
        rng = random.Random(self.options.pair_seed)
        ids = list(ids)
        pairs = []
        for rnd in range(self.options.pairs_per_image):
            order = ids[:]
            rng.shuffle(order)
            if len(order) % 2:
                order.append(order[0])
            pairs += [(rnd, order[i], order[i + 1]) for i in range(0, len(order), 2) if order[i] != order[i + 1]]
        return pairs

    def _cache_file(self, ids: Sequence[str], kind: str = "comparisons") -> Path | None:
        if self.cache_dir is None:
            return None
        key = stable_hash({"fingerprint": self.fingerprint(), "ids": list(ids)}, 16)
        return self.cache_dir / "mllm-prompt" / f"{kind}-{key}.jsonl"

    def prepare(self, source: SampleSource) -> None:
        from iqabench.io import JsonlLog

        if self.options.stimulus == "multiple":
            return self._prepare_groups(source)
        if self.options.stimulus != "double":
            return
        if self.backend is None:
            self.setup(self.ctx)
        ids = list(source.ids)
        pairs = self.sample_pairs(ids)
        file = self._cache_file(ids)
        done: dict[tuple[int, str, str], dict] = {}
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            done = {(r["round"], r["first"], r["second"]): r for r in JsonlLog(file).read()}
        records = [done[p] for p in pairs if p in done]
        todo = [p for p in pairs if p not in done]
        cache: dict[str, Any] = {}
        size = max(1, self.batch_size)
        for start in range(0, len(todo), size):
            chunk, images = [], []
            for rnd, a, b in todo[start:start + size]:
                for sid in (a, b):
                    if sid not in cache:
                        sample = source.load(sid)
                        cache[sid] = sample.image if sample is not None else None
                if cache[a] is not None and cache[b] is not None:  # an undecodable image is recorded when scored
                    chunk.append((rnd, a, b))
                    images.append((cache[a], cache[b]))
            if len(cache) > 4 * size:  # keep only the images the next chunks may reuse soon
                cache = {}
            if not chunk:
                continue
            answers, outcomes = self._ask(self.pair_queries(images), COMPARE_PREFIX, parse_comparison)
            for (rnd, a, b), answer, outcome in zip(chunk, answers, outcomes):
                w = {1: 1.0, 0: 0.0, 2: 0.5}.get(outcome) if self.options.answer == "generate" else outcome
                rec = {"round": rnd, "first": a, "second": b, "answer": answer, "outcome": w}
                records.append(rec)
                if file is not None:
                    with JsonlLog(file) as log:
                        log.append(rec)
        self._fit(ids, records, file)

    def _fit(self, ids: Sequence[str], records: list[dict], file: Path | None) -> None:
        index = {sid: i for i, sid in enumerate(ids)}
        usable = [r for r in records if r["outcome"] is not None]
        compared = sorted({r[k] for r in usable for k in ("first", "second")}, key=index.get)
        local = {sid: i for i, sid in enumerate(compared)}
        outcomes = [(local[r["first"]], local[r["second"]], r["outcome"]) for r in usable]
        from . import bradley_terry, thurstone  # numpy and scipy: imported by a fit, not by listing the method

        if self.options.pair_aggregate == "thurstone":
            logp = thurstone.scaled(thurstone.fit(thurstone.outcome_counts(
                len(compared), outcomes, ties_win_both=self.options.answer == "generate"))) if compared else []
        else:
            logp = bradley_terry.fit(len(compared), outcomes, prior=self.options.bt_prior) if compared else []
        self._strengths = {sid: float(v) for sid, v in zip(compared, logp)}
        counts: dict[str, list[int]] = {}
        for r in records:
            for sid in (r["first"], r["second"]):
                counts.setdefault(sid, [0, 0])[0] += 1
                counts[sid][1] += r["outcome"] is not None
        for sid, (asked, parsed) in counts.items():
            self._extras.setdefault(sid, {}).update({"comparisons": asked, "parsed_comparisons": parsed})
        self._pair_stats = {"pairs": len(records), "pair_parse_failures": len(records) - len(usable),
                            "images_without_comparison": len(ids) - len(compared),
                            "comparisons_file": str(file) if file is not None else None}

    # -- multiple stimulus ----------------------------------------------------------------
    def sample_groups(self, ids: Sequence[str], refs: dict[str, str] | None = None) -> list[tuple[int, tuple[str, ...]]]:
        """(group number, ids): for each image in order, groups_per_image groups led by it, each
        completed by group_size - 1 distinct others drawn uniformly (a repeat is drawn again); with
        `refs` (full reference), the others share the leader's reference and an image whose reference
        has fewer than group_size images leads no group."""
        o = self.options
        ids = list(ids)
        if refs is None and len(ids) < o.group_size:
            raise IqaError(f"stimulus=multiple: {len(ids)} image(s) to score, fewer than group_size={o.group_size}")
        pools: dict[str | None, list[str]] = {}
        for sid in ids:
            pools.setdefault(refs[sid] if refs is not None else None, []).append(sid)
        rng = random.Random(o.group_seed)
        groups = []
        for sid in ids:
            pool = pools[refs[sid] if refs is not None else None]
            if len(pool) < o.group_size:
                continue
            for _ in range(o.groups_per_image):
                group = [sid]
                while len(group) < o.group_size:
                    other = rng.choice(pool)
                    if other not in group:
                        group.append(other)
                groups.append((len(groups), tuple(group)))
        return groups

    def _prepare_groups(self, source: SampleSource) -> None:
        from iqabench.io import JsonlLog

        if self.backend is None:
            self.setup(self.ctx)
        ids = list(source.ids)
        refs = None
        if self.info.needs_reference:  # group by reference: read each sample's reference name first
            refs = {}
            for sid in ids:  # one sample at a time: only the names are kept
                sample = source.load(sid)
                if sample is None:  # undecodable: recorded by the engine
                    continue
                if sample.ref is None:
                    raise IqaError(f"{sid}: no reference (stimulus=multiple on mllm-prompt-fr needs a dataset "
                                   f"with references)")
                refs[sid] = sample.ref
            ids = [sid for sid in ids if sid in refs]
        groups = self.sample_groups(ids, refs)
        grouped = {sid for _, members in groups for sid in members}
        self._ungrouped = {sid for sid in ids if sid not in grouped}
        file = self._cache_file(ids, "rankings")
        done: dict[tuple[int, tuple[str, ...]], dict] = {}
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            done = {(r["group"], tuple(r["ids"])): r for r in JsonlLog(file).read()}
        records = [done[g] for g in groups if g in done]
        todo = [g for g in groups if g not in done]
        size = max(1, self.batch_size)
        n = self.options.group_size
        for start in range(0, len(todo), size):
            chunk, images, references = [], [], []
            for number, members in todo[start:start + size]:
                loaded = [source.load(sid) for sid in members]
                if all(s is not None for s in loaded):  # an undecodable image is recorded when scored
                    chunk.append((number, members))
                    images.append([s.image for s in loaded])
                    references.append(loaded[0].reference if refs is not None else None)
            if not chunk:
                continue
            queries = self.group_queries(images, references)
            answers, ranks = self._ask(queries, "", lambda a: parse_ranking(a, n))
            for (number, members), answer, rank in zip(chunk, answers, ranks):
                rec = {"group": number, "ids": list(members), "answer": answer, "ranks": rank}
                records.append(rec)
                if file is not None:  # one line per group: its images are recorded together
                    with JsonlLog(file) as log:
                        log.append(rec)
        self._aggregate(ids, records, file)

    def _aggregate(self, ids: Sequence[str], records: list[dict], file: Path | None) -> None:
        index = {sid: i for i, sid in enumerate(ids)}
        usable = [r for r in records if r["ranks"] is not None]
        ranked = sorted({sid for r in usable for sid in r["ids"]}, key=index.get)
        local = {sid: i for i, sid in enumerate(ranked)}
        from . import thurstone  # numpy and scipy: imported by a fit, not by listing the method

        counts = thurstone.pair_counts(len(ranked), [([local[sid] for sid in r["ids"]], r["ranks"]) for r in usable])
        scores = thurstone.scaled(thurstone.fit(counts)) if ranked else []
        self._strengths = {sid: float(v) for sid, v in zip(ranked, scores)}
        tally: dict[str, list[int]] = {}
        for r in records:
            for sid in r["ids"]:
                tally.setdefault(sid, [0, 0])[0] += 1
                tally[sid][1] += r["ranks"] is not None
        for sid, (asked, parsed) in tally.items():
            self._extras.setdefault(sid, {}).update({"groups": asked, "parsed_groups": parsed})
        self._pair_stats = {"groups": len(records), "group_parse_failures": len(records) - len(usable),
                            "images_without_ranking": len(ids) - len(ranked),
                            "images_without_group": len(self._ungrouped),
                            "rankings_file": str(file) if file is not None else None}

    # -- records ---------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self.options.examples is not None and Path(self.options.examples).expanduser().is_file():
            out["examples_sha256"] = file_hash(self.options.examples)
        if self.backend is not None:
            out["backend"] = self.backend.fingerprint()
        return out

    def runtime_stats(self) -> dict[str, Any]:
        stats = {"queries": self.queries_made, "parse_failures": len(self._failed), **self._pair_stats}
        if self.options.stimulus in ("double", "multiple"):
            stats["image_parse_failures"] = stats.pop("parse_failures")
        return stats

    def sample_extras(self, sample_id: str) -> dict[str, Any]:
        return self._extras.pop(sample_id, {})


class MllmPromptFR(MllmPrompt):
    name: ClassVar[str] = "mllm-prompt-fr"
    info: ClassVar[MethodInfo] = MethodInfo(
        kind="zero-shot", higher_better=True, needs_weights=_WEIGHTS, needs_gpu=True, extra="mllm",
        needs_reference=True,
        description="Seed 001's full-reference prompting: the reference and the distorted image in one prompt "
                    "(-o system=standard|cot|in-context), a generated 0-100 score or level parsed from the text; "
                    "-o stimulus=multiple: the reference, then a ranking of group_size of its distorted images.")
    Options: ClassVar[type[MllmPromptOptions]] = MllmPromptFROptions
