"""Stage-1 instruction data in the Q-Instruct conversation format (LLaVA-style JSON).

The file is a JSON list; each entry names one image and a conversation:
    {"id": "...", "image": "relative/or/absolute.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nHow is the clarity?"},
                       {"from": "gpt", "value": "The clarity is low ..."}, ...]}
Turns alternate human/gpt, starting with human and ending with gpt. `<image>` may appear in the
first human turn only (it is where the image was in the original; each backend puts the image
at its own template's place). Image paths are relative to `image_folder` (by default the JSON
file's folder). Every problem is reported in one line naming the file and the entry.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from iqabench.errors import IqaError

IMAGE_TAG = "<image>"
HUMAN = ("human", "user")
ASSISTANT = ("gpt", "assistant")


@dataclasses.dataclass(frozen=True)
class Conversation:
    id: str
    image: Path
    turns: tuple[tuple[str, str], ...]  # (question, answer), the image tag removed




def _strip_tag(text: str) -> str:
    return text.replace(IMAGE_TAG + "\n", "").replace("\n" + IMAGE_TAG, "").replace(IMAGE_TAG, "").strip()


def _entry(raw, index: int, where: str, folder: Path, check_files: bool) -> Conversation:
    label = f"{where}: entry {index}"
    if not isinstance(raw, dict):
        raise IqaError(f"{label}: expected an object with 'image' and 'conversations', got {type(raw).__name__}")
    if "id" in raw:
        label += f" (id {raw['id']!r})"
    image = raw.get("image")
    if isinstance(image, list) and len(image) == 1:
        image = image[0]
    if isinstance(image, list):
        raise IqaError(f"{label}: {len(image)} images; only single-image conversations are supported")
    if not isinstance(image, str) or not image.strip():
        raise IqaError(f"{label}: 'image' must be a file name (text)")
    path = Path(image).expanduser()
    path = path if path.is_absolute() else folder / path
    if check_files and not path.is_file():
        raise IqaError(f"{label}: image {path} not found")
    turns = raw.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise IqaError(f"{label}: 'conversations' must be a non-empty list of turns")
    pairs: list[tuple[str, str]] = []
    for t, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or "from" not in turn:
            raise IqaError(f"{label}: turn {t} must be {{'from': 'human'|'gpt', 'value': text}}")
        want = HUMAN if t % 2 == 0 else ASSISTANT
        if str(turn["from"]).lower() not in want:
            raise IqaError(f"{label}: turn {t} is from {turn['from']!r}, expected {want[0]!r} "
                           f"(turns alternate human/gpt, starting with human)")
        if t > 0 and t % 2 == 0 and IMAGE_TAG in turn["value"]:
            raise IqaError(f"{label}: turn {t} holds {IMAGE_TAG}; the image may appear in the first turn only")
        if t % 2 == 1:
            answer = turn["value"].strip()
            if not answer:
                raise IqaError(f"{label}: turn {t} has an empty answer")
            pairs.append((_strip_tag(turns[t - 1]["value"]), answer))
    if len(turns) % 2:
        raise IqaError(f"{label}: the conversation ends with a human turn; it must end with a gpt answer")
    if any(not q for q, _ in pairs):
        raise IqaError(f"{label}: a human turn holds no question")
    return Conversation(id=str(raw.get("id", index)), image=path, turns=tuple(pairs))


def load_instructions(file: str | Path, image_folder: str | Path | None = None,
                      check_files: bool = True) -> list[Conversation]:
    path = Path(file).expanduser()
    if not path.is_file():
        raise IqaError(f"instructions {file}: file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise IqaError(f"{path}: instructions are not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise IqaError(f"{path}: instructions are not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(raw, list):
        raise IqaError(f"{path}: expected a JSON list of conversations (the Q-Instruct format), "
                       f"got {type(raw).__name__}")
    if not raw:
        raise IqaError(f"{path}: holds no conversation")
    folder = Path(image_folder).expanduser() if image_folder else path.parent
    if check_files and not folder.is_dir():
        raise IqaError(f"image_folder {folder}: not a folder")
    return [_entry(item, i, str(path), folder, check_files) for i, item in enumerate(raw)]
