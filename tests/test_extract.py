"""What the user gets as the new cell, for every reply shape a model produces."""

from __future__ import annotations

import ast
import textwrap
import time
from dataclasses import dataclass
from typing import Any

import pytest

from llmscript_magic._errors import ExtractionError, NoCodeError, TruncatedReplyError
from llmscript_magic._pipeline.extract import extract_code


def md(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@dataclass
class Case:
    id: str
    reply: str
    code: str
    how: str
    note: str | None = None  # a fragment one of the notes must contain


F3 = "```"
CSV_SCRIPT = md("""
    import csv

    def total(path):
        with open(path) as f:
            rows = list(csv.DictReader(f))

        return sum(float(r["amount"]) for r in rows)


    print(total("sales.csv"))
    """)

CASES = [
    Case("fence-with-prose", md(f"""
        Here's a script that sums the `amount` column of `sales.csv`:

        {F3}python
        {textwrap.indent(CSV_SCRIPT, "        ").strip()}
        {F3}

        It reads the file with `csv.DictReader` and prints the total.
        Let me know if you need anything else!
        """), CSV_SCRIPT, "single block"),
    Case("tilde-fence", "Sure:\n~~~python\nprint('hi')\n~~~\nDone.", "print('hi')\n",
         "single block"),
    Case("longer-fence-around-backticks", md("""
        Here it is:

        ````python
        README = '''
        ```python
        print(1)
        ```
        '''
        print(README)
        ````
        """), "README = '''\n```python\nprint(1)\n```\n'''\nprint(README)\n", "single block"),
    Case("tilde-fence-around-backticks", "~~~\nx = '''\n```\n'''\nprint(x)\n~~~\n",
         "x = '''\n```\n'''\nprint(x)\n", "single block"),
    Case("closing-fence-must-be-as-long", "````python\nprint(1)\n```\nprint(2)\n````\n",
         "print(1)\n```\nprint(2)\n", "single block"),
    Case("closing-fence-with-info-is-content", "```python\ns = 1\n```text\n```\n",
         "s = 1\n```text\n", "single block"),
    Case("closing-fence-longer-and-trailing-spaces", "```py\nprint(3)\n`````   \nbye",
         "print(3)\n", "single block"),
    Case("info-title", "```python title=\"report.py\"\nprint('r')\n```", "print('r')\n",
         "single block"),
    Case("info-pandoc-class", "```{.python .numberLines}\nprint('p')\n```", "print('p')\n",
         "single block"),
    Case("info-lang-colon-file", "```python:main.py\nprint('m')\n```", "print('m')\n",
         "single block"),
    *[Case(f"tag-{tag}", f"Code:\n```{tag}\nx = 2\nprint(x)\n```\n", "x = 2\nprint(x)\n",
           "single block") for tag in ["py", "Python", "python3", "PY", "ipython", "Py3"]],
    Case("untagged-fence", "Try this:\n```\nimport math\nprint(math.pi)\n```",
         "import math\nprint(math.pi)\n", "single block"),
    Case("numbered-list-indent", md("""
        1. Save this as `plot.py`:

           ```python
           import math

           for i in range(3):
               print(math.sqrt(i))
           ```

        2. Run it.
        """), "import math\n\nfor i in range(3):\n    print(math.sqrt(i))\n", "single block"),
    Case("bullet-list-indent", "- Code:\n  ```python\n  def f():\n      return 1\n  print(f())\n"
         "  ```\n- Done", "def f():\n    return 1\nprint(f())\n", "single block"),
    Case("crlf", "Here:\r\n\r\n```python\r\nimport os\r\n\r\nprint(os.sep)\r\n```\r\n",
         "import os\n\nprint(os.sep)\n", "single block"),
    Case("lone-cr", "Here:\r```python\rprint(1)\rprint(2)\r```\r", "print(1)\nprint(2)\n",
         "single block"),
    Case("unclosed-final-fence", "Here is the script:\n\n```python\nimport sys\nprint(sys.argv)\n",
         "import sys\nprint(sys.argv)\n", "single block", "no closing fence"),
    Case("bare-code-with-blank-lines", md("""
        import json


        def load(path):
            with open(path) as f:

                data = json.load(f)

            return data


        def main():
            print(load("x.json"))


        main()
        """), md("""
        import json


        def load(path):
            with open(path) as f:

                data = json.load(f)

            return data


        def main():
            print(load("x.json"))


        main()
        """), "whole reply"),
    Case("bare-code-surrounded-by-blank-lines", "\n\n  \nprint('x')\n\n   \n\n",
         "print('x')\n", "whole reply"),
    Case("bare-code-with-backticks-in-docstring", md('''
        def f():
            """Example:

            ```python
            f()
            ```
            """
            return 1

        print(f())
        '''), md('''
        def f():
            """Example:

            ```python
            f()
            ```
            """
            return 1

        print(f())
        '''), "whole reply"),
    Case("unfenced-code-between-prose", md("""
        From the data we compute the mean. Here is the script:

        import statistics

        values = [1, 2, 3]
        print(statistics.mean(values))

        Import the CSV first if your data lives in a file.
        """), "import statistics\n\nvalues = [1, 2, 3]\nprint(statistics.mean(values))\n",
         "code found between prose", "no code fences"),
    Case("unfenced-docstring-and-decorator", md('''
        Sure! Below is the program.

        """Summarise numbers."""
        import functools


        @functools.cache
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)


        print(fib(20))

        Hope this helps.
        '''), '"""Summarise numbers."""\nimport functools\n\n\n@functools.cache\ndef fib(n):\n'
         "    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\nprint(fib(20))\n",
         "code found between prose"),
    Case("claude-style-full-reply", md("""
        I'll write a script that summarises `orders.csv` by month.

        ## Approach

        - Read the CSV with the standard library
        - Group by the `YYYY-MM` prefix of the date

        ```python
        #!/usr/bin/env python3
        \"\"\"Monthly order totals.\"\"\"
        import csv
        from collections import defaultdict


        def main() -> None:
            totals: dict[str, float] = defaultdict(float)
            with open("orders.csv", newline="") as f:
                for row in csv.DictReader(f):
                    totals[row["date"][:7]] += float(row["amount"])

            for month in sorted(totals):
                print(f"{month}: {totals[month]:.2f}")


        if __name__ == "__main__":
            main()
        ```

        ## How to run

        ```bash
        python monthly.py
        ```

        ## Example output

        ```
        2024-01: 1520.00
        2024-02: 980.50
        ```

        **Notes:**
        - Rows with a missing amount will raise `ValueError`.
        """), md('''
        #!/usr/bin/env python3
        """Monthly order totals."""
        import csv
        from collections import defaultdict


        def main() -> None:
            totals: dict[str, float] = defaultdict(float)
            with open("orders.csv", newline="") as f:
                for row in csv.DictReader(f):
                    totals[row["date"][:7]] += float(row["amount"])

            for month in sorted(totals):
                print(f"{month}: {totals[month]:.2f}")


        if __name__ == "__main__":
            main()
        '''), "single block", "sample-output"),
    Case("python-tagged-sample-output", "```python\nprint(dict(a=1))\n```\nOutput:\n```python\n"
         "{'a': 1}\n```", "print(dict(a=1))\n", "single block", "sample-output"),
    Case("bash-then-python", md("""
        First install the dependency:

        ```bash
        pip install requests
        ```

        Then run:

        ```python
        import requests
        print(requests.get("https://example.com").status_code)
        ```
        """), 'import requests\nprint(requests.get("https://example.com").status_code)\n',
         "single block", "shell block"),
    Case("console-dollar", "```console\n$ pip install numpy\n```\n```python\nimport numpy\n"
         "print(numpy.ones(2))\n```", "import numpy\nprint(numpy.ones(2))\n", "single block",
         "shell commands are not run"),
    Case("sh-tag-after", "```python\nprint(5)\n```\nRun it with:\n```sh\npython main.py\n```",
         "print(5)\n", "single block", "shell block"),
    Case("untagged-shell", "```\n$ python script.py --in data.csv\n```\n```python\nprint(6)\n```",
         "print(6)\n", "single block", "shell block"),
    Case("untagged-pip-install", "```\npip install pandas\n```\n\n```\nimport pandas\n"
         "print(pandas.__version__)\n```", "import pandas\nprint(pandas.__version__)\n",
         "single block", "shell block"),
    Case("text-output-block", md("""
        ```python
        for i in range(2):
            print(i)
        ```

        ```text
        0
        1
        ```
        """), "for i in range(2):\n    print(i)\n", "single block", "sample-output"),
    Case("output-tag", "```python\nprint(sum([1, 2]))\n```\n```output\n3\n```",
         "print(sum([1, 2]))\n", "single block", "sample-output"),
    Case("json-example-output", "```python\nimport json\nprint(json.dumps({'a': 1}))\n```\n"
         "Example output:\n```json\n{\"a\": 1}\n```", "import json\nprint(json.dumps({'a': 1}))\n",
         "single block", "sample-output"),
    Case("untagged-after-output-colon", md("""
        ```python
        print({"total": 3, "count": 2})
        ```

        **Output:**

        ```
        {'total': 3, 'count': 2}
        ```
        """), 'print({"total": 3, "count": 2})\n', "single block", "sample-output"),
    Case("untagged-after-this-prints", md("""
        ```
        import math
        print(f"Area: {math.pi:.2f}")
        ```

        This prints:

        ```
        Area: 3.14
        ```
        """), 'import math\nprint(f"Area: {math.pi:.2f}")\n', "single block", "sample-output"),
    Case("untagged-data-without-intro", "```python\nprint([1, 2])\n```\n```\n[1, 2]\n```",
         "print([1, 2])\n", "single block", "sample-output"),
    Case("prints-in-intro-is-not-output", md("""
        Here's a script that prints the totals:

        ```
        print(1 + 2)
        ```
        """), "print(1 + 2)\n", "single block"),
    Case("step-by-step-joined", md("""
        ## Step 1: load the data

        ```python
        import pandas as pd

        df = pd.read_csv("sales.csv")
        ```

        ## Step 2: clean it

        ```python
        df = df.dropna()
        df["total"] = df["price"] * df["qty"]
        ```

        ## Step 3: save

        ```python
        df.to_csv("clean.csv", index=False)
        print(len(df))
        ```
        """), md("""
        import pandas as pd

        df = pd.read_csv("sales.csv")

        df = df.dropna()
        df["total"] = df["price"] * df["qty"]

        df.to_csv("clean.csv", index=False)
        print(len(df))
        """), "joined 3 blocks", "Joined 3"),
    Case("helper-then-use-joined", md("""
        First a helper:

        ```python
        def square(x):
            return x * x
        ```

        Now use it:

        ```python
        print([square(i) for i in range(4)])
        ```
        """), "def square(x):\n    return x * x\n\nprint([square(i) for i in range(4)])\n",
         "joined 2 blocks"),
    Case("complete-plus-usage", md("""
        ```python
        import csv

        def count_rows(path):
            with open(path) as f:
                return sum(1 for _ in csv.reader(f))

        if __name__ == "__main__":
            print(count_rows("data.csv"))
        ```

        You can also call it from another script:

        ```python
        print(count_rows("other.csv"))
        ```
        """), md("""
        import csv

        def count_rows(path):
            with open(path) as f:
                return sum(1 for _ in csv.reader(f))

        if __name__ == "__main__":
            print(count_rows("data.csv"))
        """), "longest of 2 blocks", "block at line 2"),
    Case("entry-call-plus-followup", md("""
        ```python
        def main():
            print("report")

        main()
        ```

        Then:

        ```python
        main()
        print("again")
        ```
        """), 'def main():\n    print("report")\n\nmain()\n', "longest of 2 blocks"),
    Case("alternative-shorter", md("""
        ```python
        import csv
        with open("a.csv") as f:
            for row in csv.reader(f):
                print(row)
        ```

        Alternatively, with pandas:

        ```python
        import pandas as pd
        print(pd.read_csv("a.csv"))
        ```
        """), 'import csv\nwith open("a.csv") as f:\n    for row in csv.reader(f):\n'
         '        print(row)\n', "longest of 2 blocks"),
    Case("fragments-then-complete", md("""
        Load:

        ```python
        def load():
            return [3, 1, 2]
        ```

        Sort:

        ```python
        def ordered():
            return sorted(load())
        ```

        Here is the complete script:

        ```python
        def load():
            return [3, 1, 2]

        print(sorted(load()))
        ```
        """), "def load():\n    return [3, 1, 2]\n\nprint(sorted(load()))\n",
         "block marked complete", "introduced as the complete script"),
    Case("complete-first-then-usage", md("""
        Here's the full script:

        ```python
        def greet(name):
            return "hi " + name
        print(greet("a"))
        ```

        Usage:

        ```python
        import sys
        from greet import greet
        for name in sys.argv[1:]:
            print(greet(name))
        ```
        """), 'def greet(name):\n    return "hi " + name\nprint(greet("a"))\n',
         "block marked complete"),
    Case("excerpt-after-script", md("""
        Here's the script:

        ```python
        import pandas as pd

        df = pd.read_csv("sales.csv")
        df = df.dropna()
        print(df.describe())
        ```

        The key line is the cleaning step:

        ```python
        df = df.dropna()
        ```
        """), 'import pandas as pd\n\ndf = pd.read_csv("sales.csv")\ndf = df.dropna()\n'
         'print(df.describe())\n', "single block", "repeats lines of the block at line 4"),
    Case("steps-then-unmarked-full-listing", md("""
        Step 1:

        ```python
        import json
        data = json.load(open("in.json"))
        ```

        Step 2:

        ```python
        print(len(data))
        ```

        Everything in one place:

        ```python
        import json
        data = json.load(open("in.json"))
        print(len(data))
        ```
        """), 'import json\ndata = json.load(open("in.json"))\nprint(len(data))\n',
         "single block", "repeats lines"),
    Case("longest-of-unrelated", "```python\nprint(1)\n```\n```python\nx = 1\ny = 2\nprint(x + y)\n"
         "```", "x = 1\ny = 2\nprint(x + y)\n", "longest of 2 blocks"),
    Case("javascript-skipped", "```javascript\nconsole.log(1)\n```\n```python\nprint(1)\n```",
         "print(1)\n", "single block", "javascript block"),
    Case("sql-skipped", md("""
        The query:

        ```sql
        SELECT name FROM users;
        ```

        ```python
        import sqlite3
        con = sqlite3.connect("app.db")
        print(con.execute("SELECT name FROM users").fetchall())
        ```
        """), 'import sqlite3\ncon = sqlite3.connect("app.db")\n'
         'print(con.execute("SELECT name FROM users").fetchall())\n', "single block", "sql block"),
    Case("pycon-session-skipped", "```python\nprint(2 ** 8)\n```\n```pycon\n>>> 2 ** 8\n256\n```",
         "print(2 ** 8)\n", "single block", "interactive-session"),
    Case("notebook-magic-removed",
         "```python\n!pip install rich\nimport rich\nrich.print('x')\n```",
         "import rich\nrich.print('x')\n", "single block", "install packages in the sandbox"),
    Case("broken-python-still-returned", "```python\ndef f(:\n    pass\n```",
         "def f(:\n    pass\n", "single block"),
    Case("trailing-whitespace-lines", "```python\n\n\nprint(1)   \n\n   \n\t\n```",
         "print(1)\n", "single block"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_extraction_cases(case: Case) -> None:
    got = extract_code(case.reply)
    assert got.code == case.code
    assert got.how == case.how
    if case.note is not None:
        assert any(case.note in n for n in got.notes), got.notes
    assert got.code.endswith("\n") and not got.code.endswith("\n\n")
    assert all(b.code.strip() for b in got.blocks)
    try:  # validation reuses the tree: it must be the cell's code, line for line
        fresh = ast.dump(ast.parse(got.code), include_attributes=True)
    except SyntaxError:
        assert got.tree is None
    else:
        assert got.tree is not None and ast.dump(got.tree, include_attributes=True) == fresh


def test_blocks_record_language_info_and_line() -> None:
    got = extract_code("Intro\n\n```Python3 title=\"a.py\"\nprint(1)\n```\n")
    (block,) = got.blocks
    assert (block.lang, block.info, block.code.strip(), block.start_line) == (
        "python", 'Python3 title="a.py"', "print(1)", 4)


def test_joined_blocks_are_all_recorded_in_order() -> None:
    reply = "```python\na = 1\n```\n```python\nb = a + 1\n```\n```python\nprint(b)\n```"
    got = extract_code(reply)
    assert [b.code.strip() for b in got.blocks] == ["a = 1", "b = a + 1", "print(b)"]
    assert [b.start_line for b in got.blocks] == [2, 5, 8]


def test_clean_reply_has_no_notes() -> None:
    assert extract_code("```python\nprint(1)\n```").notes == ()


NO_CODE = [
    ("refusal", "I can't help with creating malware. Is there something else I can do?"),
    ("question-back", "Which column holds the dates? Once you tell me, I'll write the script."),
    ("from-import-prose", "From the data we compute the mean.\nImport the CSV first.\n"
                          "Then plot it."),
    ("colon-prose", "Note: this"),
    ("tuple-like-prose", "Yes, sure"),
    ("single-word", "Okay"),
    ("only-shell", "Run:\n```bash\npip install pandas\n```"),
    ("only-output", "Output:\n```\n42\n```"),
    ("only-other-language", "```javascript\nconsole.log('x')\n```"),
    ("empty", ""),
    ("empty-fence", "Here is the code:\n```python\n\n```"),
    ("whitespace", "  \n\t\r\n"),
]


@pytest.mark.parametrize("reply", [r for _, r in NO_CODE], ids=[i for i, _ in NO_CODE])
def test_no_code_raises_a_one_line_fix_it_message(reply: str) -> None:
    with pytest.raises(NoCodeError) as err:
        extract_code(reply)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.endswith("ephrase the spec or add details.")
    assert isinstance(err.value, ExtractionError)


def test_no_code_message_quotes_the_end_of_the_reply_from_a_sentence_start() -> None:
    # Models ask their question last; the old message showed the first 80 characters and
    # cut the question off (issue 15).
    question = ("Before I write the script, could you tell me which column holds the order "
                "date, and whether the amounts include tax?")
    reply = "I looked at the file you described and have a few thoughts. " * 12 + question
    with pytest.raises(NoCodeError) as err:
        extract_code(reply)
    msg = str(err.value)
    quote = msg.removeprefix("The model replied without code: …").split(" Answer its")[0]
    assert quote.endswith(question)
    assert quote.startswith("I looked at")  # whole sentences: never cut mid-sentence
    assert len(quote) <= 400
    assert msg.endswith("? Answer its question in the spec, or rephrase the spec or add "
                        "details.")


def test_no_code_quote_of_an_overlong_last_sentence_is_bounded() -> None:
    reply = "Sure. " + "very " * 200 + "long question?"
    with pytest.raises(NoCodeError) as err:
        extract_code(reply)
    quote = str(err.value).removeprefix("The model replied without code: ").split(" Answer")[0]
    assert quote.startswith("…very ") and quote.endswith("long question?")
    assert len(quote) <= 401


def test_short_refusal_is_shown_whole() -> None:
    with pytest.raises(NoCodeError, match=r"without code: I can't do that\. Rephrase"):
        extract_code("I can't\ndo that.")


@pytest.mark.parametrize("reply", ["```python\nprint(1)\n```", "```python\nimport os\nfor x in",
                                   "no code yet"])
def test_truncated_reply_is_never_used(reply: str) -> None:
    with pytest.raises(TruncatedReplyError) as err:
        extract_code(reply, truncated=True)
    assert str(err.value) == (
        "The reply was cut off at max_tokens, so its code is incomplete and was not used: "
        "raise --max-tokens or shorten the spec.")


def test_unclosed_fence_is_taken_only_when_not_truncated() -> None:
    reply = "```python\nprint('partial')\n"
    assert extract_code(reply).code == "print('partial')\n"
    with pytest.raises(TruncatedReplyError):
        extract_code(reply, truncated=True)


def test_absurdly_nested_reply_is_handled() -> None:
    code = "print(" + " + ".join(["'a'"] * 3000) + ")"
    assert extract_code(f"```python\n{code}\n```").code == code + "\n"


# -- a catalogue of how models answer (issue 15) ----------------------------------------
# Each reply is written the way that model family writes; each case says what the user
# wants in the new cell and which rule of the extractor found it.

PRICES_R1_FINAL = md("""
    import pandas as pd

    prices = pd.read_csv("prices.csv")["price"]
    print(f"mean price: {prices.mean():.2f}")
    """)
PRIMES = md("""
    def primes(n):
        found = []
        k = 2
        while len(found) < n:
            if all(k % p for p in found):
                found.append(k)
            k += 1
        return found


    print(primes(10))
    """)

MODEL_CASES = [
    # DeepSeek-R1 / QwQ / Qwen3 served through an OpenAI-compatible base_url: the trace is in
    # the text. Its draft is longer than the answer and called "the full code".
    Case("deepseek-r1-draft-longer-than-answer", md(f"""
        <think>
        Okay, the user wants the mean of the "price" column in prices.csv. Let me think
        about edge cases: missing values, a currency sign. Here's the full code:

        {F3}python
        import csv
        import statistics


        def load(path):
            with open(path, newline="") as f:
                return [float(row["price"].lstrip("$")) for row in csv.DictReader(f)
                        if row["price"]]


        def main():
            prices = load("prices.csv")
            print(statistics.mean(prices))
            print(statistics.median(prices))


        if __name__ == "__main__":
            main()
        {F3}

        Wait, they only asked for the mean, and pandas is in the image. Simpler is better.
        </think>

        Here's a short script that prints the mean price:

        {F3}python
        {textwrap.indent(PRICES_R1_FINAL, "        ").strip()}
        {F3}

        It reads the CSV with pandas and prints the mean with two decimals.
        """), PRICES_R1_FINAL, "single block", "Left out the reasoning trace (lines 1-27)"),
    # The chat template put <think> in the prompt, so only </think> is in the reply; the trace
    # has a fenced one-liner that must not beat the real script after it.
    Case("deepseek-r1-missing-open-tag-one-liner-in-trace", md(f"""
        Okay, so I need the first 10 primes. Quick version:
        {F3}python
        print([2, 3, 5, 7, 11, 13, 17, 19, 23, 29])
        {F3}
        Hmm, that is hard-coded. Better to compute them.
        </think>

        {F3}python
        {textwrap.indent(PRIMES, "        ").strip()}
        {F3}
        """), PRIMES, "single block", "code is taken only from the answer"),
    Case("qwen3-think-then-bare-code", md("""
        <think>
        Simple: math.factorial. No need for a loop.
        </think>

        import math

        print(math.factorial(10))
        """), "import math\n\nprint(math.factorial(10))\n", "whole reply", "reasoning trace"),
    Case("trace-only-reply-uses-the-trace", md(f"""
        <think>
        The user wants today's date. That is one line:
        {F3}python
        import datetime
        print(datetime.date.today())
        {F3}
        """), "import datetime\nprint(datetime.date.today())\n", "single block",
        "only a reasoning trace"),
    Case("open-thoughts-begin-of-thought-tags", md(f"""
        <|begin_of_thought|>
        Draft: {F3}python
        print("draft")
        {F3}
        <|end_of_thought|>

        <|begin_of_solution|>
        {F3}python
        print("answer")
        {F3}
        <|end_of_solution|>
        """), 'print("answer")\n', "single block", "reasoning trace"),
    # Claude: headings, a helper, then "and then" the call: complementary blocks are joined.
    Case("claude-helper-then-call-joined", md(f"""
        I'll break this into two small pieces.

        ## 1. A function that loads the data

        {F3}python
        import pandas as pd


        def load_sales(path: str) -> pd.DataFrame:
            df = pd.read_csv(path, parse_dates=["date"])
            return df.dropna(subset=["amount"])
        {F3}

        ## 2. A function that totals it by month

        {F3}python
        def monthly_totals(df: pd.DataFrame) -> pd.Series:
            return df.groupby(df["date"].dt.to_period("M"))["amount"].sum()
        {F3}

        You can then call them like this:

        {F3}python
        totals = monthly_totals(load_sales("sales.csv"))
        print(totals)
        {F3}

        Each month's total is printed on its own line.
        """), md("""
        import pandas as pd


        def load_sales(path: str) -> pd.DataFrame:
            df = pd.read_csv(path, parse_dates=["date"])
            return df.dropna(subset=["amount"])

        def monthly_totals(df: pd.DataFrame) -> pd.Series:
            return df.groupby(df["date"].dt.to_period("M"))["amount"].sum()

        totals = monthly_totals(load_sales("sales.csv"))
        print(totals)
        """), "joined 3 blocks", "Joined 3"),
    # GPT-4o: two real alternatives; they are never merged.
    Case("gpt-option-1-option-2-stay-apart", md(f"""
        Here are two ways to count the rows of `data.csv`.

        ### Option 1: Using the `csv` module

        {F3}python
        import csv

        with open("data.csv", newline="") as f:
            rows = list(csv.reader(f))
        print(len(rows) - 1)
        {F3}

        ### Option 2: Using `pandas`

        {F3}python
        import pandas as pd

        rows = pd.read_csv("data.csv")
        print(len(rows))
        {F3}

        ### Explanation:
        - **Option 1** needs no extra packages.
        - **Option 2** is handy if you'll analyse the data further.
        """), md("""
        import csv

        with open("data.csv", newline="") as f:
            rows = list(csv.reader(f))
        print(len(rows) - 1)
        """), "longest of 2 blocks", "the other block was left out"),
    Case("gpt-method-2-linked-by-name-stays-apart", md(f"""
        **Method 1**

        {F3}python
        data = [3, 1, 2]
        print(sorted(data))
        {F3}

        **Method 2** (in place)

        {F3}python
        data.sort()
        print(data)
        {F3}
        """), "data = [3, 1, 2]\nprint(sorted(data))\n", "longest of 2 blocks",
        "runs on its own"),
    # A file name as the fence's info string (Llama, Qwen-Coder, Codestral do this).
    Case("llama-file-name-info-string", md(f"""
        **main.py**
        {F3}main.py
        import sys

        print(sys.version_info[:2])
        {F3}
        """), "import sys\n\nprint(sys.version_info[:2])\n", "single block"),
    Case("file-name-then-language", md(f"""
        {F3}app.py python
        from pathlib import Path

        print(sorted(p.name for p in Path(".").iterdir()))
        {F3}

        {F3}requirements.txt
        pandas
        {F3}
        """), 'from pathlib import Path\n\nprint(sorted(p.name for p in Path(".").iterdir()))\n',
        "single block", "requirements.txt block"),
    Case("path-as-info-string", "```src/report.py\nprint('report')\n```\n", "print('report')\n",
         "single block"),
    # The only python block is never dropped for how its intro sounds.
    Case("final-code-looks-like", md(f"""
        After the changes above, the final code looks like:

        {F3}python
        print(sorted(set(open("words.txt").read().split())))
        {F3}
        """), 'print(sorted(set(open("words.txt").read().split())))\n', "single block"),
    Case("only-block-after-output-sounding-intro", md(f"""
        Here's what it looks like:

        {F3}
        import turtle

        turtle.circle(50)
        turtle.done()
        {F3}
        """), "import turtle\n\nturtle.circle(50)\nturtle.done()\n", "single block",
        "the only code in the reply"),
    # Code without fences.
    Case("markdown-indented-code-block", md("""
        Here is the script:

            import json

            with open("data.json") as f:
                data = json.load(f)
            print(len(data))

        It prints the number of records.
        """), 'import json\n\nwith open("data.json") as f:\n    data = json.load(f)\n'
        "print(len(data))\n", "indented code block", "no code fences"),
    Case("indented-snippet-under-a-list-item", md("""
        1. Make sure `pandas` is installed.
        2. Run this:

           import pandas as pd
           print(pd.read_csv("a.csv").describe())

        3. Read the summary.
        """), 'import pandas as pd\nprint(pd.read_csv("a.csv").describe())\n',
        "indented code block"),
    Case("indented-code-next-to-a-shell-fence", md(f"""
        Install it first:

        {F3}bash
        pip install rich
        {F3}

        Then:

            from rich import print
            print("[bold]done[/bold]")
        """), 'from rich import print\nprint("[bold]done[/bold]")\n', "indented code block",
        "outside its fences"),
    # Interactive sessions: prompts are stripped only when that is the only code.
    Case("doctest-session-only", md(f"""
        {F3}pycon
        >>> import math
        >>> math.sqrt(16)
        4.0
        >>> for i in range(2):
        ...     print(i)
        ...
        0
        1
        {F3}
        """), "import math\nmath.sqrt(16)\nfor i in range(2):\n    print(i)\n",
        "interactive session, prompts removed", "prompts and output lines were removed"),
    Case("ipython-session-only-unfenced", md("""
        In [1]: import pandas as pd

        In [2]: df = pd.DataFrame({"a": [1, 2]})

        In [3]: df.sum()
        Out[3]:
        a    3
        dtype: int64
        """), 'import pandas as pd\n\ndf = pd.DataFrame({"a": [1, 2]})\n\ndf.sum()\n',
        "interactive session, prompts removed"),
    Case("ipython-continuation-lines", md(f"""
        {F3}ipython
        In [1]: def double(x):
           ...:     return 2 * x
           ...:

        In [2]: double(21)
        Out[2]: 42
        {F3}
        """), "def double(x):\n    return 2 * x\n\ndouble(21)\n",
        "interactive session, prompts removed"),
    Case("session-next-to-a-script-is-skipped", md(f"""
        {F3}python
        def area(r):
            return 3.14159 * r * r

        print(area(2))
        {F3}

        Trying it out:

        {F3}
        >>> area(1)
        3.14159
        {F3}
        """), "def area(r):\n    return 3.14159 * r * r\n\nprint(area(2))\n", "single block",
        "interactive-session"),
    # Small local models (Llama 3.x 8B, Qwen2.5 7B, Hermes, Mistral) answering as a tool call.
    Case("json-tool-call-as-text", '{"name": "python", "arguments": {"code": "import os\\n'
         'print(sorted(os.listdir(\'.\')))"}}', "import os\nprint(sorted(os.listdir('.')))\n",
         "JSON tool call", '"python" tool call'),
    Case("json-tool-call-in-json-fence", md(f"""
        I'll run the following code:

        {F3}json
        {{"name": "run_python", "parameters": {{"code": "total = sum(range(9))\\nprint(total)"}}}}
        {F3}
        """), "total = sum(range(9))\nprint(total)\n", "JSON tool call", "line 4"),
    Case("hermes-qwen-tool-call-tags", md("""
        <tool_call>
        {"name": "run_code", "arguments": {"script": "for i in range(3):\\n    print(i)"}}
        </tool_call>
        """), "for i in range(3):\n    print(i)\n", "JSON tool call"),
    Case("openai-style-arguments-string", '{"name": "python", "arguments": "{\\"code\\": '
         '\\"print(6 * 7)\\"}"}', "print(6 * 7)\n", "JSON tool call"),
    Case("mistral-tool-calls-prefix", '[TOOL_CALLS] [{"name": "python", "arguments": {"code": '
         '"import this"}}]', "import this\n", "JSON tool call"),
    Case("langchain-action-input", md("""
        Thought: I should compute it in Python.
        {"action": "python_repl", "action_input": "print(2 ** 10)"}
        """), "print(2 ** 10)\n", "JSON tool call"),
    Case("llama-python-tag", "<|python_tag|>import datetime\nprint(datetime.date.today())"
         "<|eom_id|>", "import datetime\nprint(datetime.date.today())\n", "whole reply"),
    Case("qwen-im-end-token-left-in-text", "```python\nprint('ok')\n```<|im_end|>",
         "print('ok')\n", "single block"),
    # <code> tags (Claude asked for XML-ish output, HTML from chat front-ends).
    Case("code-tags", md("""
        <code>
        import random
        print(random.randint(1, 6))
        </code>
        """), "import random\nprint(random.randint(1, 6))\n", "single block", "<code> tags"),
    Case("html-pre-code-with-entities", '<p>Run this:</p>\n<pre><code class="language-python">'
         "xs = [3, 1, 2]\nif len(xs) &gt; 1 and xs[0] &lt; 5:\n    print(sorted(xs))\n"
         "</code></pre>", "xs = [3, 1, 2]\nif len(xs) > 1 and xs[0] < 5:\n    print(sorted(xs))\n",
         "single block", "<code> tags"),
    Case("python-tags-joined", md("""
        <python>
        def greet(name):
            return f"Hello, {name}!"
        </python>
        Then:
        <python>
        print(greet("Ada"))
        </python>
        """), 'def greet(name):\n    return f"Hello, {name}!"\n\nprint(greet("Ada"))\n',
        "joined 2 blocks"),
    Case("code-llama-python-tags", "[PYTHON]\ndef add(a, b):\n    return a + b\n\n\n"
         "print(add(2, 3))\n[/PYTHON]", "def add(a, b):\n    return a + b\n\n\nprint(add(2, 3))\n",
         "single block", "[PYTHON] tags"),
    Case("openai-tool-calls-list-as-text", '{"tool_calls": [{"type": "function", "function": '
         '{"name": "python", "arguments": "{\\"code\\": \\"print(len(\'abc\'))\\"}"}}]}',
         "print(len('abc'))\n", "JSON tool call"),
    # Gemini: code, an explanation, then how to run it (a shell block).
    Case("gemini-code-explanation-how-to-run", md(f"""
        Of course! Here's a Python script that counts word frequencies in `book.txt`.

        {F3}python
        import re
        from collections import Counter


        def word_counts(path):
            with open(path, encoding="utf-8") as f:
                return Counter(re.findall(r"[a-z']+", f.read().lower()))


        if __name__ == "__main__":
            for word, n in word_counts("book.txt").most_common(10):
                print(f"{{word}}: {{n}}")
        {F3}

        **Explanation:**

        1. **`re.findall`** splits the text into lowercase words.
        2. **`Counter.most_common(10)`** gives the ten most frequent.

        **How to run:**

        {F3}bash
        python word_counts.py
        {F3}
        """), md("""
        import re
        from collections import Counter


        def word_counts(path):
            with open(path, encoding="utf-8") as f:
                return Counter(re.findall(r"[a-z']+", f.read().lower()))


        if __name__ == "__main__":
            for word, n in word_counts("book.txt").most_common(10):
                print(f"{word}: {n}")
        """), "single block", "shell block"),
    # A session split over two fenced blocks is one session.
    Case("session-in-two-blocks", md(f"""
        {F3}pycon
        >>> import statistics
        >>> data = [2, 4, 4, 5]
        {F3}

        {F3}pycon
        >>> statistics.mean(data)
        3.75
        {F3}
        """), "import statistics\ndata = [2, 4, 4, 5]\n\nstatistics.mean(data)\n",
        "interactive session, prompts removed"),
    # Qwen3 with thinking switched off still sends an empty trace.
    Case("qwen3-empty-think", "<think>\n\n</think>\n\n```python\nprint('hi')\n```\n",
         "print('hi')\n", "single block", "reasoning trace"),
    Case("inline-code-tag-is-a-mention-not-the-script", md("""
        The function <code>load()</code> reads the file:

        import json


        def load():
            return json.load(open("a.json"))


        print(load())
        """), 'import json\n\n\ndef load():\n    return json.load(open("a.json"))\n\n\n'
        "print(load())\n", "code found between prose"),
    # Code that mentions think tags is code, not a trace.
    Case("script-that-strips-think-tags", md(f"""
        {F3}python
        import re

        reply = open("reply.txt").read()
        print(re.sub(r"<think>.*?</think>", "", reply, flags=re.S).strip())
        print(reply.split("</think>")[-1])
        {F3}
        """), md("""
        import re

        reply = open("reply.txt").read()
        print(re.sub(r"<think>.*?</think>", "", reply, flags=re.S).strip())
        print(reply.split("</think>")[-1])
        """), "single block"),
]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.id for c in MODEL_CASES])
def test_how_models_answer(case: Case) -> None:
    got = extract_code(case.reply)
    assert got.code == case.code
    assert got.how == case.how
    if case.note is not None:
        assert any(case.note in n for n in got.notes), got.notes
    # validation reuses this tree: it must be the cell's code, line for line
    assert got.tree is not None
    assert ast.dump(got.tree, include_attributes=True) == ast.dump(ast.parse(got.code),
                                                                   include_attributes=True)


def test_a_trace_followed_by_a_question_is_no_code_quoting_the_answer() -> None:
    reply = md(f"""
        <think>
        I could write:
        {F3}python
        print(open("sales.csv").read())
        {F3}
        But there are two files. I'll ask.
        </think>

        Which file should I read: `sales.csv` or `sales_2024.csv`?
        """)
    with pytest.raises(NoCodeError) as err:
        extract_code(reply)
    assert str(err.value) == (
        "The model replied without code: Which file should I read: `sales.csv` or "
        "`sales_2024.csv`? Answer its question in the spec, or rephrase the spec or add details.")


def test_the_tree_matches_the_cell_line_for_line() -> None:
    # Leading blank lines, removed !pip lines and joined blocks must not shift the line
    # numbers that validation reports.
    reply = "```python\n\n!pip install rich\nimport os\nos.system('ls')\n```\n"
    got = extract_code(reply)
    assert got.code == "import os\nos.system('ls')\n"
    assert got.tree is not None and got.tree.body[1].lineno == 2


@pytest.mark.parametrize("reply", [
    "\n\n".join(["Okay."] * 400),
    "\n\n".join(["(", "Okay"] * 200),
    "\n\n".join(["Note: this matters"] * 400),
], ids=["short-paragraphs", "open-brackets", "colon-notes"])
def test_long_prose_replies_are_answered_quickly(reply: str) -> None:
    # each paragraph parses as Python on its own; trying every run of them took ~45 s
    t0 = time.monotonic()
    with pytest.raises(NoCodeError):
        extract_code(reply)
    assert time.monotonic() - t0 < 2


def test_code_between_many_prose_paragraphs_is_found() -> None:
    reply = "\n\n".join(["Some context."] * 30 + ["import os", "print(os.sep)"]
                        + ["More notes."] * 30)
    got = extract_code(reply)
    assert (got.code, got.how) == ("import os\n\nprint(os.sep)\n", "code found between prose")
    assert got.blocks[0].start_line == 61


def test_reasoning_model_through_an_openai_compatible_server(openai_standin: Any) -> None:
    # a local R1-style server streams the trace as text through the real openai SDK
    from llmscript_magic._pipeline.generate import generate

    openai_standin.enqueue(md(f"""
        <think>
        The full code would be:
        {F3}python
        import sys
        print(sys.argv)
        {F3}
        No: the user wants 0 to 2, a loop is enough.
        </think>

        {F3}python
        for i in range(3):
            print(i)
        {F3}
        """))
    gen = generate("Print 0 to 2.", model="openai:gpt-5-mini", sandbox="local", cache=False)
    assert gen.code == "for i in range(3):\n    print(i)\n"
    extract = gen.report.checks[0]
    assert (extract.name, extract.status) == ("extract", "pass")
    assert "Left out the reasoning trace (lines 1-8)" in extract.message
    assert gen.report.ok


# -- issue 26: how current models wrap, reason around and accompany a script -----------------
DEDUPE = md("""
    import csv
    import sys


    def dedupe(rows):
        seen = set()
        for row in rows:
            key = tuple(row)
            if key not in seen:
                seen.add(key)
                yield row


    def main(path):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        writer = csv.writer(sys.stdout)
        writer.writerows(dedupe(rows))


    if __name__ == "__main__":
        main(sys.argv[1])
    """)
DEDUPE_TESTS = md("""
    import pytest

    from dedupe import dedupe


    def test_keeps_first_of_each_row():
        rows = [["a", "1"], ["b", "2"], ["a", "1"]]
        assert list(dedupe(rows)) == [["a", "1"], ["b", "2"]]


    def test_empty_input():
        assert list(dedupe([])) == []


    def test_order_is_kept():
        rows = [["z"], ["y"], ["z"], ["x"]]
        assert list(dedupe(rows)) == [["z"], ["y"], ["x"]]


    @pytest.mark.parametrize("n", [1, 5, 50])
    def test_identical_rows_collapse(n):
        assert list(dedupe([["same"]] * n)) == [["same"]]


    def test_rows_differing_in_one_field_both_stay():
        rows = [["a", "1"], ["a", "2"]]
        assert list(dedupe(rows)) == rows
    """)


def fence(code: str, info: str = "python") -> str:
    return f"{F3}{info}\n{code.rstrip()}\n{F3}"


CURRENT_MODEL_CASES = [
    # 1. Claude's artifact format as text: the tag lines must not cut off the imports and the
    #    last lines (read as prose, only the middle paragraphs parsed).
    Case("artifact-around-unfenced-script",
         "I'll make a small command-line tool for this.\n\n"
         '<antArtifact identifier="dedupe-csv" type="application/vnd.ant.code" '
         'language="python" title="dedupe.py">\n' + DEDUPE +
         "</antArtifact>\n\nRun it as `python dedupe.py input.csv > output.csv`.\n",
         DEDUPE, "single block", "<antArtifact> wrapper at line 3"),
    Case("artifact-around-fenced-script",
         'Here you go:\n\n<antArtifact identifier="d" type="application/vnd.ant.code" '
         'language="python" title="Dedupe rows">\n' + fence(DEDUPE) + "\n</antArtifact>\n",
         DEDUPE, "single block"),
    Case("artifact-close-tag-on-the-fence-line",
         '<antArtifact identifier="d" type="application/vnd.ant.code" language="python">\n'
         + fence(DEDUPE) + "</antArtifact>\n\nThe script keeps the first copy of each row.",
         DEDUPE, "single block"),
    Case("artifact-tag-and-code-on-one-line",
         '<antArtifact identifier="t" type="application/vnd.ant.code" title="hello.py">'
         'import sys\nprint("hello", sys.argv[1:])</antArtifact>',
         'import sys\nprint("hello", sys.argv[1:])\n', "single block", "as a python block"),
    Case("artifact-close-tag-then-prose-on-its-line",
         '<antArtifact identifier="c" type="application/vnd.ant.code" language="python">\n'
         "import sys\nprint(sys.argv)\n</antArtifact> Let me know if it helps!",
         "import sys\nprint(sys.argv)\n", "single block"),
    Case("artifact-without-language-but-code-in-it", md("""
         Sure.

         <artifact type="application/vnd.ant.code" identifier="sum">
         import statistics

         values = [3, 1, 4, 1, 5]

         print(statistics.mean(values))
         </artifact>
         """), "import statistics\n\nvalues = [3, 1, 4, 1, 5]\n\nprint(statistics.mean(values))\n",
         "single block"),
    Case("answer-and-solution-xml-tags", md("""
         <reasoning>
         A draft that is longer and says it is the full code:
         import os
         for root, dirs, files in os.walk("."):
             print(root, len(files))
         </reasoning>
         <answer>
         import os

         print(len(os.listdir(".")))
         </answer>
         """), 'import os\n\nprint(len(os.listdir(".")))\n', "single block", "reasoning trace"),
    Case("html-template-inside-a-fence-is-code", md(f"""
         {F3}python
         PAGE = \"\"\"
         <section>
         <h1>Report</h1>
         </section>
         \"\"\"
         print(PAGE)
         {F3}
         """), 'PAGE = """\n<section>\n<h1>Report</h1>\n</section>\n"""\nprint(PAGE)\n',
         "single block"),
    # 2. Reasoning written with other markers: the answer wins over any draft in them.
    Case("kimi-think-arrows", md(f"""
         ◁think▷The user wants the largest file. Full version first:
         {F3}python
         import os
         sizes = {{}}
         for root, _, files in os.walk("."):
             for name in files:
                 path = os.path.join(root, name)
                 sizes[path] = os.path.getsize(path)
         print(max(sizes, key=sizes.get))
         {F3}
         Only the current folder was asked for; simpler.◁/think▷
         {F3}python
         import os

         print(max(os.listdir("."), key=os.path.getsize))
         {F3}
         """), 'import os\n\nprint(max(os.listdir("."), key=os.path.getsize))\n',
         "single block", "◁think▷"),
    Case("reasoning-tags-with-a-complete-draft", md(f"""
         <reasoning>
         Here is the complete script I first considered:
         {F3}python
         import json
         import sys
         data = json.load(open(sys.argv[1]))
         print(json.dumps(data, indent=2, sort_keys=True))
         {F3}
         The user wants compact output, so no indent.
         </reasoning>

         {F3}python
         import json
         import sys

         print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))
         {F3}
         """), md("""
         import json
         import sys

         print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))
         """), "single block", "Left out the reasoning trace"),
    Case("gpt-oss-harmony-channels",
         "<|channel|>analysis<|message|>We need a script. Draft:\n" + fence(
             "import math\nfor i in range(100):\n    print(i, math.sqrt(i))\n"
             "print('done, full code')") +
         "\nShorter is fine.<|end|><|start|>assistant<|channel|>final<|message|>"
         "Here is the script:\n\n" + fence("import math\n\nprint(math.sqrt(2))") + "<|return|>",
         "import math\n\nprint(math.sqrt(2))\n", "single block", "analysis channel"),
    Case("gpt-oss-channels-leaked-as-plain-text",
         "analysisThe user wants a word count. The complete script could be:\n"
         + fence("import sys, collections\ntext = sys.stdin.read()\n"
                 "print(collections.Counter(text.split()).most_common())") +
         "\nBut only the total is asked.assistantfinalHere it is:\n\n"
         + fence("import sys\n\nprint(len(sys.stdin.read().split()))"),
         "import sys\n\nprint(len(sys.stdin.read().split()))\n", "single block",
         "Left out the reasoning trace"),
    # 3. A script and its (longer) pytest file: the script is the answer.
    Case("script-beside-a-longer-test-file",
         "Save this as `dedupe.py`:\n\n" + fence(DEDUPE) +
         "\n\nAnd these tests as `test_dedupe.py`:\n\n" + fence(DEDUPE_TESTS) +
         "\n\nRun `pytest -q` to check it.\n",
         DEDUPE, "single block", "also wrote tests (test_dedupe.py)"),
    Case("test-file-named-in-the-info-string",
         fence(DEDUPE, "python title=\"dedupe.py\"") + "\n\n"
         + fence(DEDUPE_TESTS, "python title=\"tests/test_dedupe.py\""),
         DEDUPE, "single block", "not part of the script"),
    Case("unnamed-test-block-after-the-script",
         "The script:\n\n" + fence(DEDUPE) + "\n\nA few checks:\n\n" + fence(DEDUPE_TESTS),
         DEDUPE, "single block", "run pytest"),
    # 4. Gemini's tool_code blocks are Python; its tool_outputs blocks are sample output.
    Case("gemini-tool-code", md(f"""
         I'll compute it with code.

         {F3}tool_code
         import datetime
         print(datetime.date(2025, 1, 1).strftime("%A"))
         {F3}
         {F3}tool_outputs
         Wednesday
         {F3}
         January 1st, 2025 is a Wednesday.
         """), 'import datetime\nprint(datetime.date(2025, 1, 1).strftime("%A"))\n',
         "single block", "sample-output"),
    # 5. The script written to a file by a shell heredoc.
    Case("heredoc-in-a-bash-block", md(f"""
         Create the script and run it:

         {F3}bash
         mkdir -p tools
         cat > tools/clean.py << 'EOF'
         import re
         import sys

         for line in sys.stdin:
             print(re.sub(r"\\s+", " ", line).strip())
         EOF
         python tools/clean.py < notes.txt
         {F3}
         """), md("""
         import re
         import sys

         for line in sys.stdin:
             print(re.sub(r"\\s+", " ", line).strip())
         """), "single block", "heredoc (tools/clean.py)"),
    Case("heredoc-piped-to-python", md(f"""
         {F3}sh
         python3 - <<EOF
         print(sum(range(10)))
         EOF
         {F3}
         """), "print(sum(range(10)))\n", "single block", "heredoc (python -)"),
    # 6. Lines of backticks inside the script's own strings end the fence too early.
    Case("backtick-lines-inside-a-template-string", md(f"""
         This writes a Markdown report:

         {F3}python
         import statistics

         TEMPLATE = \"\"\"# Scores
         {F3}
         {{table}}
         {F3}
         Mean: {{mean:.1f}}
         \"\"\"

         scores = {{"ann": 91, "bob": 78}}
         table = "\\n".join(f"{{k}}: {{v}}" for k, v in scores.items())
         print(TEMPLATE.format(table=table, mean=statistics.mean(scores.values())))
         {F3}

         It prints the table inside a code block.
         """), md(f"""
         import statistics

         TEMPLATE = \"\"\"# Scores
         {F3}
         {{table}}
         {F3}
         Mean: {{mean:.1f}}
         \"\"\"

         scores = {{"ann": 91, "bob": 78}}
         table = "\\n".join(f"{{k}}: {{v}}" for k, v in scores.items())
         print(TEMPLATE.format(table=table, mean=statistics.mean(scores.values())))
         """), "single block", "past a line of backticks at line 7"),
    # 7. Optional tweaks and excerpts after a complete script are not joined onto it.
    Case("tweak-after-complete-script", md(f"""
         Here's the complete script:

         {F3}python
         import csv

         with open("prices.csv", newline="") as f:
             reader = csv.reader(f)
             header = next(reader)
             total = sum(float(row[1]) for row in reader)
         print(f"{{header[1]}}: {{total:.2f}}")
         {F3}

         If your file uses semicolons, change the reader line to:

         {F3}python
         reader = csv.reader(f, delimiter=";")
         {F3}
         """), md("""
         import csv

         with open("prices.csv", newline="") as f:
             reader = csv.reader(f)
             header = next(reader)
             total = sum(float(row[1]) for row in reader)
         print(f"{header[1]}: {total:.2f}")
         """), "single block", "(an optional tweak)"),
    Case("optional-addition-after-complete-script", md(f"""
         The full script:

         {F3}python
         import collections

         words = open("book.txt").read().lower().split()
         counts = collections.Counter(words)
         for word, n in counts.most_common(10):
             print(word, n)
         {F3}

         Optionally, to also chart them, add:

         {F3}python
         import matplotlib.pyplot as plt
         plt.bar(*zip(*counts.most_common(10)))
         plt.show()
         {F3}
         """), md("""
         import collections

         words = open("book.txt").read().lower().split()
         counts = collections.Counter(words)
         for word, n in counts.most_common(10):
             print(word, n)
         """), "block marked complete", "the other block was left out"),
    Case("changed-line-without-a-telling-intro", md(f"""
         {F3}python
         import csv

         THRESHOLD = 100.0
         with open("prices.csv", newline="") as f:
             rows = [r for r in csv.DictReader(f) if float(r["price"]) > THRESHOLD]
         for row in rows:
             print(row["name"])
         {F3}

         For pricier items:

         {F3}python
         THRESHOLD = 500.0
         {F3}
         """), md("""
         import csv

         THRESHOLD = 100.0
         with open("prices.csv", newline="") as f:
             rows = [r for r in csv.DictReader(f) if float(r["price"]) > THRESHOLD]
         for row in rows:
             print(row["name"])
         """), "single block", "changed copy"),
    Case("elided-excerpt-while-explaining", md(f"""
         {F3}python
         import json

         def load(path):
             with open(path) as f:
                 return json.load(f)

         config = load("config.json")
         print(sorted(config))
         {F3}

         The `with` block closes the file for you:

         {F3}python
         with open(path) as f:
             ...
         {F3}
         """), md("""
         import json

         def load(path):
             with open(path) as f:
                 return json.load(f)

         config = load("config.json")
         print(sorted(config))
         """), "single block", "repeats lines"),
    # 9. The three shapes of the earlier set that still failed (ported from peers' suites).
    Case("smolagents-end-code-marker",
         "Thought: I need the square root.\nCode:\n```py\nimport math\nprint(math.sqrt(16))\n"
         "```<end_code>\n", "import math\nprint(math.sqrt(16))\n", "single block"),
    Case("two-blocks-one-function-each", md(f"""
         A function that converts Celsius:

         {F3}python
         def to_fahrenheit(c):
             return c * 9 / 5 + 32
         {F3}

         And one that converts back:

         {F3}python
         def to_celsius(f):
             return (f - 32) * 5 / 9
         {F3}
         """), md("""
         def to_fahrenheit(c):
             return c * 9 / 5 + 32

         def to_celsius(f):
             return (f - 32) * 5 / 9
         """), "joined 2 blocks"),
    Case("two-steps-not-linked-by-a-name", md(f"""
         First, make the output folder:

         {F3}python
         import os
         os.makedirs("out", exist_ok=True)
         {F3}

         Then write the report into it:

         {F3}python
         with open("out/report.txt", "w") as f:
             f.write("ok\\n")
         {F3}
         """), md("""
         import os
         os.makedirs("out", exist_ok=True)

         with open("out/report.txt", "w") as f:
             f.write("ok\\n")
         """), "joined 2 blocks"),
    # More shapes of the same kinds (first written as a held-out check of the rules above).
    Case("gpt-oss-harmony-with-start-token",
         "<|start|>assistant<|channel|>analysis<|message|>Think it over.\n"
         + fence("print('draft')") + "<|end|><|start|>assistant<|channel|>final<|message|>"
         + fence("import sys\n\nprint(sys.version)") + "<|return|>",
         "import sys\n\nprint(sys.version)\n", "single block", "analysis channel, lines 1-4"),
    Case("kimi-trace-on-one-line", "◁think▷keep it short◁/think▷" + fence("print(2 + 2)"),
         "print(2 + 2)\n", "single block", "(◁think▷, line 1)"),
    Case("unittest-class-after-the-script",
         fence("import sys\n\nprint(len(sys.argv))") + "\n\nTests:\n\n" + fence(md("""
             import subprocess
             import unittest


             class TestArgs(unittest.TestCase):
                 def test_none(self):
                     out = subprocess.run(["python", "args.py"], capture_output=True, text=True)
                     self.assertEqual(out.stdout.strip(), "1")

                 def test_two(self):
                     out = subprocess.run(["python", "args.py", "a", "b"], capture_output=True,
                                          text=True)
                     self.assertEqual(out.stdout.strip(), "3")


             if __name__ == "__main__":
                 unittest.main()
             """)), "import sys\n\nprint(len(sys.argv))\n", "single block", "also wrote tests"),
    Case("heredoc-with-dash-and-redirect-last", md(f"""
         {F3}bash
         cat <<-'PY' > count.py
         import sys
         print(sum(1 for _ in sys.stdin))
         PY
         python count.py < data.txt
         {F3}
         """), "import sys\nprint(sum(1 for _ in sys.stdin))\n", "single block",
         "heredoc (count.py)"),
    Case("smolagents-two-blobs-with-end-code",
         "Thought: make the list\nCode:\n```py\nnums = [4, 5]\n```<end_code>\n"
         "Thought: add them\nCode:\n```py\nprint(sum(nums))\n```<end_code>",
         "nums = [4, 5]\n\nprint(sum(nums))\n", "joined 2 blocks"),
    Case("numbered-steps-without-shared-names", md(f"""
         1. Make the folder:

         {F3}python
         import pathlib
         pathlib.Path("out").mkdir(exist_ok=True)
         {F3}

         2. Put a file in it:

         {F3}python
         with open("out/hello.txt", "w") as f:
             f.write("hello")
         {F3}
         """), 'import pathlib\npathlib.Path("out").mkdir(exist_ok=True)\n\n'
         'with open("out/hello.txt", "w") as f:\n    f.write("hello")\n', "joined 2 blocks"),
    # 8. A notebook returned as .ipynb JSON: its code cells, in order.
    Case("notebook-as-json", md("""
         Here is the notebook:

         {
          "cells": [
           {"cell_type": "markdown", "metadata": {}, "source": ["# Squares"]},
           {"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [],
            "source": ["import math\\n", "nums = range(5)"]},
           {"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [],
            "source": "print([n * n for n in nums])"}
          ],
          "metadata": {"kernelspec": {"name": "python3"}},
          "nbformat": 4,
          "nbformat_minor": 5
         }
         """), "import math\nnums = range(5)\n\nprint([n * n for n in nums])\n",
         "notebook JSON", "2 code cells were joined in order"),
    Case("notebook-lines-without-newlines",
         '{"cells": [{"cell_type": "code", "source": ["import os", "print(os.sep)"]}], '
         '"nbformat": 4, "nbformat_minor": 5, "metadata": {}}',
         "import os\nprint(os.sep)\n", "notebook JSON", "its code cell was used"),
    Case("notebook-as-json-in-a-fence-with-pip-cell", md(f"""
         {F3}json
         {{"cells": [
           {{"cell_type": "code", "source": ["!pip install rich"]}},
           {{"cell_type": "code", "source": ["import rich\\n", "rich.print('[b]hi[/b]')"]}}],
          "nbformat": 4, "nbformat_minor": 5, "metadata": {{}}}}
         {F3}
         """), "import rich\nrich.print('[b]hi[/b]')\n", "notebook JSON",
         "install packages in the sandbox"),
]


@pytest.mark.parametrize("case", CURRENT_MODEL_CASES, ids=[c.id for c in CURRENT_MODEL_CASES])
def test_how_current_models_answer(case: Case) -> None:
    got = extract_code(case.reply)
    assert got.code == case.code, got.notes
    assert got.how == case.how, got.notes
    if case.note is not None:
        assert any(case.note in n for n in got.notes), got.notes
    assert got.tree is not None
    assert ast.dump(got.tree, include_attributes=True) == ast.dump(ast.parse(got.code),
                                                                   include_attributes=True)


def test_tests_beside_the_script_are_offered_not_run() -> None:
    reply = ("`dedupe.py`:\n\n" + fence(DEDUPE) + "\n\n`test_dedupe.py`:\n\n"
             + fence(DEDUPE_TESTS))
    got = extract_code(reply)
    assert got.code == DEDUPE
    assert [t.code + "\n" for t in got.tests] == [DEDUPE_TESTS]
    assert got.tests[0].start_line == DEDUPE.count("\n") + 9


def test_a_test_file_alone_is_the_answer() -> None:
    # the user may have asked for tests: with nothing else, they are the code
    got = extract_code("Tests:\n\n" + fence(DEDUPE_TESTS))
    assert got.code == DEDUPE_TESTS and got.tests == ()


@pytest.mark.parametrize("reply", [
    md(f"""
        <think>
        Plan: read the CSV, then
        {F3}python
        import csv
        rows = list(csv.reader(open("a.csv")))
        print(len(rows))
        {F3}
        Hmm, but the header row should not count, so I need to
        """),
    "◁think▷Let me draft it:\n```python\nimport os\nfor name in os.listdir('.'):\n",
    "<|channel|>analysis<|message|>Draft:\n```python\nprint('draft')\n```\nNow check the edge",
], ids=["think", "kimi", "gpt-oss"])
def test_a_reply_cut_off_inside_its_reasoning_uses_no_draft(reply: str) -> None:
    with pytest.raises(TruncatedReplyError) as err:
        extract_code(reply)
    msg = str(err.value)
    assert "\n" not in msg and "stopped inside its reasoning" in msg
    assert "raise --max-tokens" in msg


@pytest.mark.parametrize(("reply", "found"), [
    ("Run:\n```bash\npip install pandas\n```", "only a shell block (line 2; shell commands"),
    ("```javascript\nconsole.log(1)\n```\n\nWant Python instead?",
     "only a javascript block (line 1). It ends: Want Python instead? Answer its question"),
    ('<antArtifact identifier="p" type="text/html" title="Page">\n<h1>Hi</h1>\n</antArtifact>',
     "only a html block (line 1)"),
    ('{"cells": [{"cell_type": "markdown", "source": ["# Plan"]}], "nbformat": 4}',
     "a notebook as JSON with no code cells (line 1)"),
    ("```bash\ncat > notes.txt << EOF\nhello\nEOF\n```", "only a shell block"),
], ids=["shell", "javascript-and-question", "html-artifact", "notebook-without-code",
        "heredoc-of-a-text-file"])
def test_no_python_says_what_the_reply_had(reply: str, found: str) -> None:
    with pytest.raises(NoCodeError) as err:
        extract_code(reply)
    msg = str(err.value)
    assert "replied without code" not in msg and "\n" not in msg
    assert msg.startswith("The reply had no Python script to use") and found in msg
    assert msg.endswith("ephrase the spec or add details.")


def test_code_left_out_of_a_run_between_prose_is_named() -> None:
    # an unrecognised wrapper glues its tag onto the imports: the run that parses is a
    # fragment, and the user is told which code-like lines it does not hold
    reply = md("""
        Here you go.

        <script_file name="count">import sys
        from collections import Counter
        </script_file ok>

        counts = Counter(sys.stdin.read().split())
        print(counts.most_common(3))
        """)
    got = extract_code(reply)
    assert got.code == "counts = Counter(sys.stdin.read().split())\nprint(counts.most_common(3))\n"
    assert any("Left out code-like lines outside them (line 4)" in n for n in got.notes), got.notes


def test_numbered_steps_that_redo_the_same_thing_stay_apart() -> None:
    # "Then" before each block, but the second block computes `total` again a different
    # way: two versions, not two steps; the one that runs on its own is taken
    reply = md(f"""
        First, with a loop:

        {F3}python
        total = 0
        for n in range(10):
            total += n
        print(total)
        {F3}

        Then with the built-in:

        {F3}python
        total = sum(range(10))
        print(total)
        {F3}
        """)
    got = extract_code(reply)
    assert got.how == "longest of 2 blocks"
    assert got.code == "total = 0\nfor n in range(10):\n    total += n\nprint(total)\n"


def test_many_xml_lines_are_read_quickly() -> None:
    reply = "Here is the data:\n\n" + "\n".join(
        f"<record id='{i}'>\nvalue {i}\n</record>" for i in range(3000))
    t0 = time.monotonic()
    with pytest.raises(NoCodeError):
        extract_code(reply)
    assert time.monotonic() - t0 < 2


def test_the_shell_block_a_heredoc_came_from_is_not_called_skipped() -> None:
    reply = md(f"""
        {F3}bash
        cat > hi.py << 'EOF'
        print("hi")
        EOF
        {F3}

        {F3}bash
        pip install rich
        {F3}
        """)
    got = extract_code(reply)
    assert got.code == 'print("hi")\n'
    assert [n for n in got.notes if n.startswith("Skipped")] == [
        "Skipped a shell block at line 7: shell commands are not run; install packages in the "
        "sandbox image instead."]


def test_a_script_with_test_named_functions_is_not_taken_for_tests() -> None:
    script = md("""
        import socket
        import time


        def test_dns(host):
            return socket.gethostbyname(host)


        def test_latency(host):
            t = time.monotonic()
            socket.create_connection((host, 80), timeout=2).close()
            return time.monotonic() - t


        for h in ["example.com"]:
            print(h, test_dns(h), test_latency(h))
        """)
    usage = fence('print(test_dns("a"))')
    got = extract_code(fence(script) + "\n\nUsage for one host:\n\n" + usage)
    assert got.code == script and got.tests == ()
