"""One validation style: every user-written structure (method options, dataset cards, reader
specs, suites) is a pydantic model whose errors become one line through iqabench.validation."""
from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

import iqabench
from iqabench import validation
from iqabench.data.card import DatasetCard
from iqabench.errors import IqaError
from iqabench.validation import Strict


class Inner(Strict):
    lookup: str = "exact"
    count: int = pydantic.Field(1, ge=1)


class Outer(Strict):
    name: str
    sheet: str | int = 0
    inner: Inner = Inner()
    items: list[Inner] = []

    @pydantic.model_validator(mode="after")
    def _not_both(self):
        if self.name == "both" and self.sheet == "both":
            raise ValueError("name and sheet cannot both be 'both'")
        return self


def line(data, **kwargs) -> str:
    with pytest.raises(IqaError) as info:
        validation.validate(Outer, data, "f.toml", **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_unknown_and_missing_keys_name_the_closest_valid_key():
    assert line({"nme": "x"}) == "f.toml: unknown key 'nme' (did you mean 'name'?); missing key 'name'"
    assert line({"name": "x", "inner": {"lokup": "e"}}) == "f.toml: inner: unknown key 'lokup' (did you mean 'lookup'?)"
    assert line({"name": "x", "items": [{}, {"cont": 2}]}) == \
        "f.toml: items[1]: unknown key 'cont' (did you mean 'count'?)"


def test_a_wrong_value_says_what_was_given_once_per_place():
    assert line({"name": "x", "sheet": True}) == \
        "f.toml: sheet: Input should be a valid string or a valid integer (got True)"  # one line for the union
    assert line({"name": "x", "inner": {"count": 0}}) == \
        "f.toml: inner.count: Input should be greater than or equal to 1 (got 0)"
    assert line({"name": 3}) == "f.toml: name: Input should be a valid string (got 3)"  # strict: no coercion


def test_a_whole_model_check_has_no_invented_place():
    """issue 20: a model-level validator's message came out as `option ?: ...`."""
    assert line({"name": "both", "sheet": "both"}) == "f.toml: name and sheet cannot both be 'both'"


def test_toml_places_and_a_cap_on_problems():
    text = line({"name": "x", "inner": {"lokup": 1}}, place=validation.toml_place)
    assert text == "f.toml: [inner]: unknown key 'lokup' (did you mean 'lookup'?)"
    many = line({"a": 1, "b": 2, "c": 3, "d": 4, "name": "x"})
    assert many.endswith("(and 1 more problem(s))") and many.count("unknown key") == 3


def test_a_card_typo_in_its_reader_is_one_line_naming_file_and_key(tmp_path):
    source = Path(iqabench.__file__).parent.parent / "datasets" / "kadid10k" / "card.toml"
    path = tmp_path / "card.toml"
    path.write_text(source.read_text().replace("[reader]\n", "[reader]\ncolum = \"x\"\n", 1))
    with pytest.raises(IqaError) as info:
        DatasetCard.from_toml(path)
    assert str(info.value) == f"{path}: [reader]: unknown key 'colum' (did you mean 'columns'?)"
    path.write_text(source.read_text() + "\n[build]\nbuildr = \"m:f\"\n")
    with pytest.raises(IqaError, match=r"card.toml: \[build\]: unknown key 'buildr' \(did you mean 'builder'\?\); "
                                       r"\[build\]: missing key 'builder'$"):
        DatasetCard.from_toml(path)


def test_option_errors_share_the_formatter():
    from iqabench import plan

    assert plan.option_problems is validation.option_problems

    class Options(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        delay: float = 0.0

    class Fake:
        name = "fake"

    Fake.Options = Options
    try:
        Options(delai=1)
    except pydantic.ValidationError as exc:
        text = validation.option_problems(Fake, exc)
    assert text.startswith("method fake: unknown option 'delai' (did you mean 'delay'?); valid options: delay")


def test_validation_errors_are_formatted_in_one_place():
    """No module but validation.py reads a pydantic error's parts itself."""
    root = Path(iqabench.__file__).parent
    readers = [str(p.relative_to(root)) for p in root.rglob("*.py")
               if p.name != "validation.py" and ".errors()" in p.read_text(encoding="utf-8")]
    assert readers == []
