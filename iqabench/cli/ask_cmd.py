"""`iqabench ask`: an MLLM answers multiple-choice perception questions (Q-Bench's LLVisionQA)."""
from __future__ import annotations

from pathlib import Path

import click

from iqabench.cli.settings import Settings, with_settings


@click.command("ask", epilog="""\b
Examples:
  iqabench ask --method softmax-owl2-qbench --questions llvisionqa_dev.json --images images/
  iqabench ask --method llava -o backend_path=llava-hf/llava-1.5-13b-hf \\
      --questions llvisionqa_dev.json --images images/ --answer generate
The question files and images of Q-Bench's A1 task (LLVisionQA): llvisionqa_dev.json and
llvisionqa_test.json with their images, https://huggingface.co/datasets/nanyangtu/LLVisionQA-QBench
(the test file withholds its answers: its questions are answered, their accuracy is not computed).""")
@click.option("--method", required=True, metavar="NAME",
              help="An MLLM method (its backend options say which model answers, e.g. softmax-owl2-qbench) "
                   "or a backend arch (`iqabench list backends`), with -o backend_path=DIR.")
@click.option("--questions", required=True, type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="A question file in the LLVisionQA release format (JSON list: img_path, question, "
                   "candidates, correct_ans, type, concern).")
@click.option("--images", required=True, type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="The folder the question file's img_path entries are relative to.")
@click.option("--answer", "answers", default="likelihood,generate", show_default=True, metavar="PATH[,PATH]",
              help="likelihood: the option whose letter is the most likely next token; generate: a greedy "
                   "answer parsed to an option (naming none or several: a recorded failure). Each its own run.")
@click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="Method or backend option (repeatable), e.g. -o backend_path=DIR.")
@click.option("--name", default=None, help="The question set's name in results and reports (default: the "
                                           "file's name without .json).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Questions per model call.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=16, show_default=True,
              help="generate: the longest answer asked for.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Ask only the first N questions (a smoke test: its own run folder).")
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True, help="Seeds the bootstrap intervals.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@with_settings
def ask_command(settings: Settings, method, questions, images, answers, option_pairs, name, batch_size,
                max_new_tokens, device, limit, seed, no_progress) -> None:
    """Answer every question of FILE with an MLLM, by likelihood and/or by a parsed generated answer.

    Resumable: rerun the same command to continue. Each answer path is a run folder under
    RESULTS/accuracy/ with accuracy.json (overall, per question type and per concern, with 95 %
    intervals); `iqabench report` tables them and tests two runs on the same questions."""
    from iqabench.options import parse_option_pairs
    from iqabench.report.accuracy import accuracy_line
    from iqabench.tasks.ask import AskConfig, ask

    options = parse_option_pairs(option_pairs)
    cfg = AskConfig(method=method, questions=questions, images=images, results=settings.results, options=options,
                    answers=tuple(a.strip() for a in answers.split(",") if a.strip()), name=name,
                    batch_size=batch_size, max_new_tokens=max_new_tokens, device=device, seed=seed, limit=limit,
                    progress=not no_progress)
    for result in ask(cfg, on_log=lambda line: click.echo(line, err=True)):
        click.echo(f"{accuracy_line(result.accuracy)} -> {result.run_dir}")
