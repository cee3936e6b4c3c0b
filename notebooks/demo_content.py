"""Cells and scripted model replies of the demo notebooks (see record.py)."""

from __future__ import annotations

RECORDED_NOTE = (
    "> The generations in this notebook were recorded against a local stand-in of the "
    "Anthropic API with scripted replies, and are replayed offline by "
    "`llmscript run --replay`. With `ANTHROPIC_API_KEY` set, run it in Jupyter to generate "
    "anew."
)

# -- quickstart ----------------------------------------------------------------
FIB = '''\
def fibonacci(n: int) -> list[int]:
    """The first n Fibonacci numbers, starting 0, 1."""
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:n]


if __name__ == "__main__":
    first = fibonacci(10)
    print("First 10 Fibonacci numbers:", first)
    print("Sum:", sum(first))
'''

SALES = '''\
import csv
import json
from pathlib import Path


def column_totals(path: Path) -> dict[str, float]:
    """Sum each numeric column; blanks and text are skipped, not fatal."""
    totals: dict[str, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for column, value in row.items():
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    continue
                totals[column] = totals.get(column, 0.0) + number
    return totals


if __name__ == "__main__":
    totals = column_totals(Path("sales.csv"))
    Path("totals.json").write_text(json.dumps(totals, indent=2))
    print("Wrote totals.json:", totals)
'''

QUICKSTART = (
    [
        ("md", "# llmscript-magic quickstart\n\nWrite what you want in plain words in a "
               "`%%generate` cell. The magic asks the model for a script, pulls the code out "
               "of the reply, checks it, inserts it as a new cell below, and with `--run` "
               "executes it in a locked-down Docker sandbox.\n\n" + RECORDED_NOTE),
        ("code", "%load_ext llmscript_magic"),
        ("md", "## 1. A first generation, run in the sandbox"),
        ("code", "%%generate --run\nPrint the first 10 Fibonacci numbers and their sum."),
        ("md", "## 2. A structured spec\n\nSections (`Input:`, `Output:`, `Constraints:`) make "
               "the request precise. `--input` copies a file into the sandbox; files the "
               "script writes are saved in `llmscript-files/` beside the notebook, a folder "
               "nothing imports or runs from (`--files-to DIR` puts them elsewhere, "
               "`--no-files` keeps them only in the result; a file is never overwritten "
               "unless this cell saved it and you pass `--overwrite`)."),
        ("code", "from pathlib import Path\n"
                 "Path('sales.csv').write_text('region,units,revenue\\n"
                 "north,10,100.5\\nsouth,,80\\neast,7,n/a\\n')\n"
                 "print(Path('sales.csv').read_text())"),
        ("code", "%%generate --run --input sales.csv --check \"json.load(open('totals.json'))"
                 "['units'] == 17\"\n"
                 "Read sales.csv, sum the numeric columns and write totals.json.\n"
                 "Input: a CSV file sales.csv in the working folder\n"
                 "Output: totals.json, a JSON object {column: total}\n"
                 "Constraints:\n- handle missing values\n- standard library only"),
        ("md", "The script's `totals.json` is now on disk, in `llmscript-files/`:"),
        ("code", "import json\n\n"
                 "print(json.loads(Path('llmscript-files/totals.json').read_text()))"),
        ("md", "## 3. What did it cost?"),
        ("code", "%llmscript usage"),
    ],
    [
        f"Here is a short script:\n\n```python\n{FIB}```\n",
        "This reads the CSV with the standard library and skips blanks:\n\n"
        f"```python\n{SALES}```\n",
    ],
)

# -- teaching demo ----------------------------------------------------------------
TEMPLATE = '''\
TEMPLATES = {
    "file_processor": "import os\\nfor name in os.listdir({directory!r}):\\n"
                      "    if name.endswith({extension!r}):\\n        print(name)\\n",
}
print(TEMPLATES["file_processor"].format(directory=".", extension=".csv"))
'''

WORDS_BROKEN = '''\
from collections import Counter

text = "the cat and the hat and the bat"
counts = Counter(text.split()
for word, n in counts.most_common(3):
    print(word, n)
'''
WORDS_FIXED = WORDS_BROKEN.replace("Counter(text.split()\n", "Counter(text.split())\n")

TEACHING = (
    [
        ("md", "# Templates versus LLM generation\n\nA template generator fills blanks in "
               "code someone wrote in advance: rigid, but predictable. An LLM writes new code "
               "for any request: flexible, but the code is untrusted input. This notebook "
               "shows the layers that make generated code safe to use.\n\n" + RECORDED_NOTE),
        ("code", TEMPLATE),
        ("md", "## Extraction: getting the script out of a chatty reply\n\nReplies mix prose, "
               "shell commands and sample output with the script. The extractor keeps only "
               "the script, even when a blank line or a `from`-sentence would fool a "
               "line-based one."),
        ("code", "from llmscript_magic import extract_code\n\n"
                 "reply = '''From the data you describe, this works:\n\n"
                 "```bash\npip install nothing-needed\n```\n\n"
                 "```python\nimport statistics\n\n\n"
                 "def mean(xs):\n    return statistics.mean(xs)\n\n\n"
                 "print(mean([1, 2, 3]))\n```\n\nOutput:\n\n```\n2\n```\n'''\n"
                 "found = extract_code(reply)\nprint(found.how)\nprint(found.code)"),
        ("md", "## Validation layers\n\nSyntax, imports and a risk scan run before anything "
               "executes. The risk scan *informs*; the sandbox is the security boundary."),
        ("code", "from llmscript_magic import validate\n\n"
                 "print(validate(\"import os\\nos.system('rm -rf /tmp/x')\\n"
                 "__import__('sub' + 'process')\\n\").as_text())"),
        ("md", "## Self-repair\n\nThe first reply below has a syntax error. The checks send "
               "the error back to the model, which fixes it; both attempts are kept."),
        ("code", "%load_ext llmscript_magic"),
        ("code", "%%generate --run\nCount the words in 'the cat and the hat and the bat' "
                 "and print the three most common with their counts."),
    ],
    [
        f"```python\n{WORDS_BROKEN}```\n",
        f"Fixed the missing parenthesis:\n\n```python\n{WORDS_FIXED}```\n",
    ],
)

# -- data transform ---------------------------------------------------------------
CLEAN = '''\
import matplotlib.pyplot as plt
import pandas as pd

raw = pd.read_csv("messy.csv")
clean = raw.copy()
clean.columns = [c.strip().lower().replace(" ", "_") for c in clean.columns]
clean["city"] = clean["city"].str.strip().str.title()
clean["temp_c"] = pd.to_numeric(clean["temp_c"], errors="coerce")
clean = clean.dropna(subset=["temp_c"]).drop_duplicates()
clean.to_csv("clean.csv", index=False)

means = clean.groupby("city")["temp_c"].mean().sort_values()
ax = means.plot.barh(title="Mean temperature by city (°C)")
ax.set_xlabel("°C")
plt.tight_layout()
plt.savefig("chart.png")
print(f"{len(raw)} rows in, {len(clean)} rows out")
print(means.round(1).to_string())
'''

DATA = (
    [
        ("md", "# Data transform: a messy CSV in, a clean table and a chart out\n\n"
               + RECORDED_NOTE),
        ("code", "%load_ext llmscript_magic"),
        ("code", "from pathlib import Path\n"
                 "Path('messy.csv').write_text('City , Temp C\\n oslo,3.5\\nLIMA,19\\n"
                 "oslo,3.5\\nnairobi,n/a\\nLima,21\\n nairobi ,17.5\\n')\n"
                 "print(Path('messy.csv').read_text())"),
        ("code", "%%generate --run --input messy.csv\n"
                 "Clean messy.csv: normalise the column names to snake_case, tidy the city "
                 "names, drop rows without a temperature and duplicate rows, save clean.csv, "
                 "and plot the mean temperature per city as a horizontal bar chart."),
    ],
    [f"This uses pandas and matplotlib:\n\n```python\n{CLEAN}```\n"],
)

# -- safety demo --------------------------------------------------------------------
HOSTILE = '''\
import os
import socket


def attempt(label: str, action) -> None:
    """Try one hostile action and report whether the sandbox allowed it."""
    try:
        result = action()
        print(f"ALLOWED  {label}: {result!r}"[:120])
    except Exception as err:
        print(f"blocked  {label}: {type(err).__name__}")


attempt("read the API key", lambda: os.environ["ANTHROPIC_API_KEY"])
attempt("open a socket to 1.1.1.1", lambda: socket.create_connection(("1.1.1.1", 53), 2))
attempt("resolve a host name", lambda: socket.gethostbyname("example.com"))
attempt("write to /etc", lambda: open("/etc/owned", "w").write("x"))
attempt("become root", lambda: os.setuid(0))
attempt("read kernel memory", lambda: open("/proc/kcore", "rb").read(16))
print("running as root:", os.getuid() == 0)
'''

SAFETY = (
    [
        ("md", "# Safety: hostile generated code, contained\n\nSuppose a model (or a prompt "
               "injection in your data) produces code that tries to steal your key, reach "
               "the network and take over the machine. The risk scan flags it; the sandbox "
               "stops it.\n\n" + RECORDED_NOTE),
        ("code", "%load_ext llmscript_magic"),
        ("code", "%%generate --run --retries 0\nCheck what this environment allows: read the "
                 "API key, open sockets, write system files, become root."),
        ("md", "With `--strict`, risky calls fail validation and the code is never run:"),
        ("code-expect-fail", "%%generate --run --strict --retries 0\n"
                             "Check what this environment allows: "
                 "read the API key, open sockets, write system files, become root. (strict)"),
    ],
    [f"```python\n{HOSTILE}```\n", f"```python\n{HOSTILE}```\n"],
)

NOTEBOOKS = {
    "quickstart": QUICKSTART,
    "teaching_demo": TEACHING,
    "data_transform": DATA,
    "safety_demo": SAFETY,
}
