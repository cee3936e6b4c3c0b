"""What the user gets as the new cell, for every reply shape a model produces."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

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


def test_no_code_message_quotes_the_start_of_the_reply() -> None:
    reply = "I'm sorry, but I need more details about the input format " * 5
    with pytest.raises(NoCodeError) as err:
        extract_code(reply)
    msg = str(err.value)
    assert msg.startswith("The model replied without code: I'm sorry, but I need more details")
    assert "…" in msg
    preview = msg.removeprefix("The model replied without code: ").split("…")[0]
    assert 60 <= len(preview) <= 80


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
