"""Multiple-choice accuracy runs (`iqabench ask`, iqabench/tasks/ask.py) in a report: their own table
per question set (overall, per question type and per concern, 95 % bootstrap intervals) and the
paired test (bootstrap of the difference, McNemar's exact test) between every two runs on the same
questions. Written as accuracy.md and accuracy.csv beside the correlation tables."""
from __future__ import annotations

import csv
import dataclasses
import io as _io
import itertools
from pathlib import Path

from iqabench import io
from iqabench.errors import IqaError
from iqabench.layout import ResultsLayout
from iqabench.runs import RESTART_ADVICE


@dataclasses.dataclass(frozen=True)
class AccuracyRun:
    run_dir: Path
    manifest: dict
    accuracy: dict | None  # None while unfinished

    @property
    def label(self) -> str:
        return f"{self.manifest.get('method_label') or self.manifest['method']} ({self.manifest['answer']})"

    @property
    def usable(self) -> bool:
        """Complete, and not a smoke test (--limit)."""
        return self.accuracy is not None and self.accuracy.get("status") == "complete" and self.manifest.get("limit") is None

    def answers(self) -> dict[str, int | None]:
        from iqabench.tasks.ask import read_answers

        return {sid: r.get("answer") for sid, r in read_answers(self.run_dir).items() if r.get("error") is None}


def find_accuracy_runs(results: Path, problems: list[str] | None = None) -> list[AccuracyRun]:
    out = []
    for run_dir in ResultsLayout(results).accuracy_dirs():
        try:
            manifest = io.read_json(run_dir / "manifest.json", "accuracy run manifest", advice=RESTART_ADVICE)
            path = run_dir / "accuracy.json"
            acc = io.read_json(path, "accuracy", advice="rerun the same `iqabench ask` command") if path.is_file() else None
            if not isinstance(manifest, dict) or not {"method", "answer", "question_set", "questions"} <= set(manifest):
                raise IqaError(f"{run_dir / 'manifest.json'}: not an accuracy run manifest; {RESTART_ADVICE}")
            out.append(AccuracyRun(run_dir, manifest, acc))
        except IqaError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return out


def _pct(value: float | None, decimals: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{decimals}f}"


def _cell(summary: dict | None, decimals: int = 2, interval: bool = True) -> str:
    if not summary or summary.get("accuracy") is None:
        return "n/a"
    text = _pct(summary["accuracy"], decimals)
    ci = summary.get("ci95")
    return f"{text} [{_pct(ci[0], decimals)}, {_pct(ci[1], decimals)}]" if interval and ci else text


def accuracy_line(acc: dict) -> str:
    """One run's result as the command prints it."""
    overall = acc["overall"]
    return (f"{acc['method_label']} ({acc['answer']}) on {acc['question_set']}: accuracy {_cell(overall)} % over "
            f"{overall['n']} question(s) with a known answer; {acc['n_unparsed']} unparsed, {acc['n_failed']} failed, "
            f"{acc['withheld']} withheld; {acc['status']}")


def _groups(runs: list[AccuracyRun], which: str) -> list[str]:
    return sorted({name for r in runs for name in (r.accuracy or {}).get(f"by_{which}", {})})


def _by_question_set(runs: list[AccuracyRun]) -> dict[tuple[str, str], list[AccuracyRun]]:
    sets: dict[tuple[str, str], list[AccuracyRun]] = {}
    for r in runs:
        sets.setdefault((r.manifest["question_set"], r.manifest["questions"]["sha256"]), []).append(r)
    return sets


def paired_tests(runs: list[AccuracyRun], n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Every two usable runs on the same question file (by hash): mcq.paired_test of the first minus the second."""
    from iqabench.runs import read_inputs
    from iqabench.tasks import mcq

    out = []
    for (name, _sha), group in _by_question_set([r for r in runs if r.usable]).items():
        if len(group) < 2:
            continue
        inputs = read_inputs(group[0].run_dir)
        questions = [mcq.Question(r["id"], r["path"], "?", ("?", "?"), r["label"]) for r in inputs]
        answers = [r.answers() for r in group]
        for (i, a), (j, b) in itertools.combinations(enumerate(group), 2):
            test = mcq.paired_test(questions, answers[i], answers[j], n_boot=n_boot, seed=seed)
            out.append({"question_set": name, "a": a.label, "b": b.label, "n_boot": n_boot, **test})
    return out


def accuracy_md(runs: list[AccuracyRun], tests: list[dict], decimals: int = 2) -> str:
    lines = ["# Multiple-choice accuracy", "",
             "Accuracy in % of the questions with a known answer, with its 95 % bootstrap interval (questions "
             "resampled). An answer that names no single option counts wrong (\"unparsed\").", ""]
    for (name, sha), group in _by_question_set(runs).items():
        usable = [r for r in group if r.usable]
        lines += [f"## {name} (question file sha256 {sha[:12]})", ""]
        if usable:
            types, concerns = _groups(usable, "type"), _groups(usable, "concern")
            head = ["Method (answer)", "n", "Overall", "unparsed"] + [f"type {t}" for t in types] \
                + [f"concern {c}" for c in concerns]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in usable:
                acc = r.accuracy
                cells = [r.label, str(acc["overall"]["n"]), _cell(acc["overall"], decimals), str(acc["n_unparsed"])]
                cells += [_cell(acc["by_type"].get(t), decimals) for t in types]
                cells += [_cell(acc["by_concern"].get(c), decimals) for c in concerns]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        left = [r for r in group if not r.usable]
        for r in left:
            state = "unfinished" if r.accuracy is None else \
                "smoke test (--limit)" if r.manifest.get("limit") is not None else r.accuracy.get("status")
            lines.append(f"- not tabled: {r.label}, {state} ({r.run_dir})")
        if left:
            lines.append("")
        mine = [t for t in tests if t["question_set"] == name]
        if mine:
            lines += ["Paired tests on the same questions (difference of accuracy a - b in points, its 95 % "
                      "bootstrap interval and p, McNemar's exact p on the questions only one of them answers right):",
                      "", "| a | b | n | a - b | 95 % interval | p (bootstrap) | only a right | only b right | p (McNemar) |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for t in mine:
                ci = t.get("ci95")
                lines.append(f"| {t['a']} | {t['b']} | {t['n']} | {_pct(t['diff'], decimals)} | "
                             + (f"[{_pct(ci[0], decimals)}, {_pct(ci[1], decimals)}]" if ci else "n/a")
                             + f" | {_p_boot(t)} | {t['only_a']} | {t['only_b']} | "
                             f"{t['p_mcnemar']:.3g} |")
            lines.append("")
    return "\n".join(lines)


def _p_boot(test: dict) -> str:
    """The bootstrap p, or its bound when no resample crossed zero (it is never exactly 0)."""
    p = test.get("p_bootstrap")
    if p is None:
        return "n/a"
    return f"< {2 / test['n_boot']:.2g}" if p == 0 else f"{p:.3g}"


def accuracy_csv(runs: list[AccuracyRun]) -> str:
    """One row per usable run x group (overall, type <name>, concern <name>)."""
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["question_set", "method", "answer", "group", "n", "accuracy", "ci95_lo", "ci95_hi", "unparsed",
                     "run_dir"])
    for r in runs:
        if not r.usable:
            continue
        acc = r.accuracy
        groups = [("overall", acc["overall"])] + [(f"{w} {k}", v) for w in ("type", "concern")
                                                   for k, v in acc[f"by_{w}"].items()]
        for group, s in groups:
            ci = s.get("ci95") or (None, None)
            writer.writerow([r.manifest["question_set"], r.manifest["method_label"], r.manifest["answer"], group,
                             s["n"], s["accuracy"], ci[0], ci[1], s["unparsed"], str(r.run_dir)])
    return buf.getvalue()


def accuracy_files(results: Path, decimals: int = 2, n_boot: int = 1000, seed: int = 0) -> tuple[dict[str, str], list[str]]:
    """{file name: text} of the accuracy tables (empty without accuracy runs), and the runs left out unreadable."""
    problems: list[str] = []
    runs = find_accuracy_runs(results, problems)
    if not runs:
        return {}, problems
    tests = paired_tests(runs, n_boot=n_boot, seed=seed)
    return {"accuracy.md": accuracy_md(runs, tests, decimals), "accuracy.csv": accuracy_csv(runs)}, problems
