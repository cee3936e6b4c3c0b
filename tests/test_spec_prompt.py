"""Spec parsing and prompt building: sections, braces and code pass through untouched."""

from __future__ import annotations

from llmscript_magic._pipeline.prompt import SYSTEM_PROMPT, build_prompt
from llmscript_magic._pipeline.spec import parse_spec

SALES = """\
Read sales.csv, sum the numeric columns and write totals.json.
Input: a CSV path
Output: a JSON object {column: total}
Constraints:
- handle missing values
- no pandas
  (the standard library is enough)
Example input: a,b\\n1,2
Example output: {"a": 1, "b": 2}
"""


def test_sections_are_parsed() -> None:
    spec = parse_spec(SALES)
    assert spec.task == "Read sales.csv, sum the numeric columns and write totals.json."
    assert spec.input == "a CSV path"
    assert spec.output == "a JSON object {column: total}"
    assert spec.constraints == ("handle missing values",
                                "no pandas (the standard library is enough)")
    assert spec.example_output == '{"a": 1, "b": 2}'
    assert spec.sections == ("input", "output", "constraints", "example_input", "example_output")


def test_free_text_is_the_task() -> None:
    spec = parse_spec("Plot a sine wave.\n\nUse 100 points.")
    assert spec.task == "Plot a sine wave.\n\nUse 100 points."
    assert spec.sections == ()
    # the task closes the message: stable parts (environment, data) go first, for caching
    assert build_prompt(spec).user.endswith("Task:\nPlot a sine wave.\n\nUse 100 points.")


def test_braces_and_code_pass_through_untouched() -> None:
    text = ("Format rows as f'{name}: {value:>{width}}' and keep {{literal}} braces.\n"
            "```python\nOutput: not a header inside a fence\nprint({1: 2})\n```\n")
    spec = parse_spec(text)
    prompt = build_prompt(spec)
    assert "f'{name}: {value:>{width}}'" in prompt.user
    assert "{{literal}}" in prompt.user
    assert "Output: not a header inside a fence\nprint({1: 2})" in prompt.user
    assert spec.output == ""


def test_hash_ignores_line_endings_but_not_content() -> None:
    a = parse_spec("Sum a column.\nInput: x\n")
    assert a.hash() == parse_spec("Sum a column.\r\nInput: x\r\n\n").hash()
    assert a.hash() != parse_spec("Sum a column.\nInput: y\n").hash()


def test_system_prompt_is_fixed_and_extra_instructions_append() -> None:
    spec = parse_spec("x")
    assert build_prompt(spec).system == SYSTEM_PROMPT
    p = build_prompt(spec, extra_system="Use {braces} freely.")
    assert p.system.startswith(SYSTEM_PROMPT) and p.system.endswith("Use {braces} freely.\n")
