"""Multiple-choice accuracy runs: an MLLM backend answers every question of a question file
(iqabench.tasks.mcq), each answer path its own resumable run folder.

Answer paths, both as the Q-Bench authors use them:
- likelihood: the option whose letter is the most likely next token after the question
  (iqabench.models.scoring.choices); the option probabilities are kept with the answer;
- generate: a greedy answer, parsed to an option (mcq.parse_answer); an answer that names no single
  option is a recorded failure to answer (counted wrong), never a guess, and never asked again.

    <results>/accuracy/<question set>/<method>-<answer>-<key>/
      manifest.json      what was asked: method and options, answer path, the question file and its
                         hash, the images' folder and hash, written once (iqabench.store.RunStore)
      inputs.json        per question: id, image path, image sha256, correct option (null: withheld)
      predictions.jsonl  one record per question: {"id", "answer" (option index or null), "error",
                         "probabilities" | "text"}; a record with `error` set (the model or the image
                         failed) is asked again on the next attempt, every other record is final
      accuracy.json      computed from the records only (mcq.accuracy): overall, by type, by concern
The key hashes the method's name and options, the answer path and its settings, the question file's
sha256 and every image's sha256: another file, image or setting is another run folder.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydantic

from iqabench import io, provenance
from iqabench.api import stable_hash
from iqabench.errors import IqaError, one_line
from iqabench.layout import ResultsLayout
from iqabench.runs import RESTART_ADVICE, inputs_hash, with_schema
from iqabench.store import RunStore
from iqabench.tasks import mcq

ANSWERS = ("likelihood", "generate")
SCHEMA_VERSION = 1  # of an accuracy run's identity: a change to how questions are asked makes other runs
IDENTITY_KEYS = ("task", "method", "answer", "key")
TASK = "mcq"
# An attempt stops when this many questions in a row fail with the same error: a systematic problem.
MAX_SAME_FAILURES_IN_A_ROW = 25


@dataclasses.dataclass(frozen=True)
class AskConfig:
    method: str  # a registered method whose options name an MLLM backend, or a backend arch
    questions: Path
    images: Path
    results: Path
    options: dict = dataclasses.field(default_factory=dict)
    answers: tuple[str, ...] = ANSWERS
    name: str | None = None  # the question set's name (default: the file's stem)
    batch_size: int = 8
    max_new_tokens: int = 16  # generate: the answer's length limit
    device: str = "auto"
    seed: int = 0  # seeds the bootstrap intervals
    n_boot: int = 1000
    limit: int | None = None  # the first N questions only: a smoke test
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Asker:
    """Who answers: the method (or backend) name, its validated backend options, the shown name."""

    name: str
    label: str
    options: Any  # a BackendOptions (or a subclass: a method's options)
    check_available: Callable[[], str | None]


@dataclasses.dataclass
class AskResult:
    run_dir: Path
    accuracy: dict
    asked_now: int


def resolve_asker(name: str, option_values: dict) -> Asker:
    """A registered method whose options are backend options (its backend answers), or a backend arch."""
    from iqabench import registry
    from iqabench.models.scoring import BackendOptions, backend_unavailable
    from iqabench.plan import method_label, resolve_method
    from iqabench.validation import validation_line

    if name not in registry.methods.names() and name in registry.backends.names():
        try:
            options = BackendOptions(**{"backend": name, **option_values})
        except pydantic.ValidationError as exc:
            raise IqaError(validation_line(f"backend {name}", exc, BackendOptions, noun="option")) from None
        return Asker(name, name, options, lambda: backend_unavailable(options))
    choice = resolve_method(name, option_values)
    if not isinstance(choice.options, BackendOptions):
        raise IqaError(f"method {choice.name} names no MLLM backend in its options, so it cannot answer questions; "
                       f"give an MLLM method or a backend ({', '.join(registry.backends.names())})")
    if choice.trainable:
        raise IqaError(f"method {choice.name} is trained: its answers need its trained parts, which `ask` does not "
                       f"load; ask its base model as a backend (--method ARCH -o backend_path=DIR) or use an untrained MLLM method")
    return Asker(choice.name, method_label(choice.cls, choice.options), choice.options,
                 lambda: choice.cls.check_available(choice.options))


@dataclasses.dataclass(frozen=True)
class QuestionSet:
    name: str
    file: Path
    sha256: str
    questions: list[mcq.Question]
    inputs: list[dict]  # per question: id, path, sha256, label (the correct option)

    @property
    def images_hash(self) -> str:
        return stable_hash([[r["path"], r["sha256"]] for r in self.inputs], length=16)


def read_question_set(path: Path, images: Path, name: str | None = None, limit: int | None = None) -> QuestionSet:
    """The questions (first `limit`), each image found below `images` and hashed; a missing image is
    one line naming the file, the entry and the path."""
    path, images = Path(path), Path(images).expanduser()
    questions = mcq.read_questions(path)[:limit]
    if not images.is_dir():
        raise IqaError(f"--images {images}: {'not a folder' if images.exists() else 'no such folder'}")
    hashes: dict[str, str] = {}
    inputs = []
    for q in questions:
        if q.image not in hashes:
            file = images / q.image
            if not file.is_file():
                raise IqaError(f"{path}: entry {q.id}: image {q.image!r} is not in {images}")
            hashes[q.image] = io.sha256_file(file, length=64)
        inputs.append({"id": q.id, "path": q.image, "sha256": hashes[q.image], "label": q.correct})
    return QuestionSet(name or path.stem, path, io.sha256_file(path, length=64), questions, inputs)


def identity(asker: Asker, qset: QuestionSet, answer: str, cfg: AskConfig) -> dict:
    settings = {"max_new_tokens": cfg.max_new_tokens} if answer == "generate" else {}
    # the images' hash is `images_hash`: runs.py reads an identity's "images" as an image-folder run's inputs hash
    return {"task": TASK, "method": asker.name, "options": asker.options.model_dump(mode="json"),
            "answer": answer, "settings": settings, "prompt": "qbench-options", "questions_sha256": qset.sha256,
            "images_hash": qset.images_hash, "limit": cfg.limit, "schema_version": SCHEMA_VERSION}


def ask(cfg: AskConfig, on_log: Callable[[str], None] = print) -> list[AskResult]:
    """Every answer path of `cfg.answers`: one run folder each, resumed where it stopped."""
    from iqabench.devices import resolve_device

    unknown = [a for a in cfg.answers if a not in ANSWERS]
    if unknown or not cfg.answers:
        raise IqaError(f"--answer {','.join(cfg.answers)}: expected {' and/or '.join(ANSWERS)}")
    asker = resolve_asker(cfg.method, cfg.options)
    qset = read_question_set(cfg.questions, cfg.images, cfg.name, cfg.limit)
    device = resolve_device(cfg.device)
    layout = ResultsLayout(cfg.results)
    backend = _LazyBackend(asker, device)
    results = []
    try:
        for answer in cfg.answers:
            results.append(_ask_one(cfg, asker, qset, answer, layout, backend, device, on_log))
    finally:
        backend.close()
    return results


class _LazyBackend:
    """The backend, loaded when a question is first left to answer (a finished run needs no model)."""

    def __init__(self, asker: Asker, device: str):
        self.asker, self.device, self.backend = asker, device, None

    def get(self):
        if self.backend is None:
            from iqabench.errors import NotAvailable
            from iqabench.models import backend as backend_module

            reason = self.asker.check_available()
            if reason:
                raise NotAvailable(f"{self.asker.name} cannot run here: {reason}")
            self.backend = backend_module.load_backend(self.asker.options.backend_spec(), self.device)
        return self.backend

    def close(self) -> None:
        self.backend = None


def _ask_one(cfg: AskConfig, asker: Asker, qset: QuestionSet, answer: str, layout: ResultsLayout,
             backend: _LazyBackend, device: str, on_log: Callable[[str], None]) -> AskResult:
    ident = identity(asker, qset, answer, cfg)
    key = stable_hash(ident)
    run_dir = layout.accuracy_dir(qset.name, asker.name, answer, key)
    withheld = sum(1 for q in qset.questions if q.correct is None)
    manifest = {
        "task": TASK, "method": asker.name, "method_label": asker.label, "answer": answer,
        "options": ident["options"], "settings": ident["settings"], "question_set": qset.name,
        # where a run-folder reader (iqabench.runs) places it: the question set is its data, asked whole
        "dataset": qset.name, "split": "all", "part": "all",
        "questions": {"file": str(qset.file.resolve()), "sha256": qset.sha256, "n": len(qset.questions),
                      "withheld": withheld},
        "images": {"folder": str(Path(cfg.images).expanduser().resolve()), "hash": qset.images_hash},
        "limit": cfg.limit, "identity": ident, "key": key, "inputs_hash": inputs_hash(qset.inputs),
        "started": provenance.now(), **provenance.environment(),
    }
    attempt = {"started": provenance.now(), "command": provenance.command_line(), "device": device,
               "batch_size": cfg.batch_size}
    ids = [q.id for q in qset.questions]
    if not run_dir.exists():
        backend.get()  # a new run has everything to ask: nothing is written before its model is ready
    with RunStore(run_dir) as store:
        store.check_or_write_manifest(manifest, IDENTITY_KEYS, attempt)
        store.check_or_write_inputs(qset.inputs, inputs_hash(qset.inputs))
        done = read_answers(run_dir, ids)
        todo = [q for q in qset.questions if q.id not in done or done[q.id].get("error")]
        on_log(f"{asker.label} ({answer}) on {qset.name}: {len(ids)} questions, {len(ids) - len(todo)} already "
               f"answered, {len(todo)} to ask -> {run_dir}")
        if todo:
            _answer_all(store, backend.get(), qset, todo, answer, cfg)
        records = read_answers(run_dir, ids)
        result = write_accuracy(run_dir, manifest, qset.questions, records, cfg.n_boot, cfg.seed)
    return AskResult(run_dir, result, len(todo))


def _answer_all(store: RunStore, backend: Any, qset: QuestionSet, todo: Sequence[mcq.Question], answer: str,
                cfg: AskConfig) -> None:
    from tqdm.auto import tqdm

    from iqabench.data.images import open_rgb
    from iqabench.models.backend import Query
    from iqabench.models.scoring.choices import OptionLetters, option_likelihoods

    letters = OptionLetters(backend, mcq.LETTERS[:max(len(q.candidates) for q in qset.questions)]) \
        if answer == "likelihood" else None
    folder = Path(cfg.images).expanduser()
    streak: tuple[str | None, int] = (None, 0)
    bar = tqdm(total=len(todo), desc=f"asking ({answer})", unit="q", disable=None if cfg.progress else True)
    for start in range(0, len(todo), max(1, cfg.batch_size)):
        batch = list(todo[start:start + max(1, cfg.batch_size)])
        records, ready = {}, []
        for q in batch:
            try:
                ready.append((q, Query((open_rgb(folder / q.image),), mcq.prompt(q))))
            except Exception as exc:  # noqa: BLE001 - that question's recorded failure
                records[q.id] = _failure(q, f"image {q.image}: {one_line(exc, 300)}")
        try:
            if ready and letters is not None:
                probs = option_likelihoods(backend, letters, [r for _, r in ready], [len(q.candidates) for q, _ in ready])
                for (q, _), p in zip(ready, probs):
                    records[q.id] = _failure(q, "no log-probability for an option letter (not among the tokens "
                                                "the model returned)") if p is None else \
                        {"id": q.id, "answer": max(range(len(p)), key=p.__getitem__), "error": None, "probabilities": p}
            elif ready:
                texts = backend.answers([r for _, r in ready], max_new_tokens=cfg.max_new_tokens)
                for (q, _), text in zip(ready, texts):
                    choice = mcq.parse_answer(text or "", q.candidates)
                    records[q.id] = {"id": q.id, "answer": choice, "error": None, "text": text,
                                     "unparsed": choice is None}
        except IqaError:
            raise  # a problem of the setup (e.g. a prompt the backend refuses): every question would fail
        except Exception as exc:  # noqa: BLE001 - the batch's recorded failures, asked again next time
            message = one_line(exc, 300, typed=True)
            for q, _ in ready:
                records[q.id] = _failure(q, message)
        for q in batch:
            rec = records[q.id]
            store.append(rec)
            error = rec["error"]
            streak = (error, streak[1] + 1) if error is not None and error == streak[0] else (error, 1)
            if error is not None and streak[1] >= MAX_SAME_FAILURES_IN_A_ROW:
                store.commit(force=True)
                raise IqaError(f"{MAX_SAME_FAILURES_IN_A_ROW} questions in a row failed with: {error}")
        store.commit()
        bar.update(len(batch))
    bar.close()


def _failure(q: mcq.Question, message: str) -> dict:
    return {"id": q.id, "answer": None, "error": message}


def read_answers(run_dir: Path, ids: Sequence[str] | None = None) -> dict[str, dict]:
    """Every saved answer record, one per question: a record without error wins over one with, a later
    failure over an earlier one. A corrupt line or a record of another question is one error line."""
    wanted = set(ids) if ids is not None else None
    out: dict[str, dict] = {}
    path = Path(run_dir) / "predictions.jsonl"

    def bad(lineno: int, reason: str) -> None:
        raise IqaError(f"{path}:{lineno}: corrupt answer record: {reason}; delete that line (its question is "
                       "asked again) or restore the file")

    for lineno, rec in io.JsonlLog(path).read_numbered(on_bad=bad):
        sid = rec.get("id")
        answer = rec.get("answer")
        if not isinstance(sid, str) or (answer is not None and (isinstance(answer, bool) or not isinstance(answer, int))):
            bad(lineno, "no question id, or an answer that is not an option index")
        if wanted is not None and sid not in wanted:
            raise IqaError(f"{path}:{lineno}: an answer to question {sid!r}, which is not among this run's "
                           f"questions; {RESTART_ADVICE}")
        old = out.get(sid)
        if old is not None and old.get("error") is None:
            continue
        out[sid] = rec
    return out


def write_accuracy(run_dir: Path, manifest: dict, questions: list[mcq.Question], records: dict[str, dict],
                   n_boot: int = 1000, seed: int = 0) -> dict:
    """accuracy.json from the saved records: answers of failed questions count as wrong, and the run
    is `partial` while any question lacks an answer."""
    answers = {sid: rec.get("answer") for sid, rec in records.items() if rec.get("error") is None}
    failed = [q.id for q in questions if q.id not in answers]
    out = {
        "task": TASK, "method": manifest["method"], "method_label": manifest["method_label"],
        "answer": manifest["answer"], "question_set": manifest["question_set"],
        "questions_sha256": manifest["questions"]["sha256"], "key": manifest["key"], "limit": manifest["limit"],
        "n_questions": len(questions), "n_failed": len(failed),
        "n_unparsed": sum(1 for q in questions if q.id in answers and answers[q.id] is None),
        "status": "complete" if not failed else "partial", "n_boot": n_boot, "seed": seed,
        "created": provenance.now(), **mcq.accuracy(questions, answers, n_boot=n_boot, seed=seed),
    }
    path = Path(run_dir) / "accuracy.json"
    io.write_json_atomic(path, with_schema(out))
    return io.read_json(path, "accuracy")  # as readers see it (intervals as lists)
