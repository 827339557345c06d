"""What the documentation checks read from Markdown: headings with their GitHub anchors, fenced
code blocks with the marker that says what to do with them, and the user documentation's files.

A fenced block of shell or Python must be preceded by a marker line (an HTML comment, invisible
once rendered) that says whether the suite runs it:

    <!-- example: run -->                  run by check_examples.py (and syntax-checked)
    <!-- example: not run: WHY -->          syntax-checked only (bash -n, py_compile)
    <!-- example: fragment: WHY -->         not checked: part of a program, or pseudo-syntax

Blocks of other languages need a marker only to be run or skipped; TOML and JSON blocks are
parsed unless marked as a fragment."""
import os
import re
from dataclasses import dataclass

MARKER = re.compile(r"^<!--\s*example:\s*(run|not run|fragment)\b\s*:?\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass
class Block:
    path: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None  # "run", "not run", "fragment" or None
    why: str


def user_docs(root):
    """README.md and every page of docs/, as paths relative to root."""
    docs = sorted(
        os.path.join("docs", f) for f in os.listdir(os.path.join(root, "docs")) if f.endswith(".md")
    )
    return ["README.md"] + docs


def blocks(root, rel):
    """The fenced code blocks of one Markdown file, with their markers."""
    lines = open(os.path.join(root, rel), encoding="utf-8").read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        mk = MARKER.match(lines[j]) if j >= 0 else None
        out.append(
            Block(rel, start + 1, lang, "\n".join(body) + "\n", mk.group(1) if mk else None,
                  mk.group(2) if mk else "")
        )
        i += 1
    return out


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(root, rel):
    """(level, text, line) of each heading outside code blocks."""
    out = []
    in_fence = None
    for n, line in enumerate(open(os.path.join(root, rel), encoding="utf-8"), 1):
        m = FENCE.match(line)
        if m and (in_fence is None or line.startswith(in_fence)):
            in_fence = None if in_fence else m.group(1)
            continue
        if in_fence:
            continue
        h = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if h:
            out.append((len(h.group(1)), h.group(2), n))
    return out


def anchors(root, rel):
    """Every anchor a link may name in this file (GitHub numbers repeated ones -1, -2, ...)."""
    seen = {}
    out = set()
    for _, text, _ in headings(root, rel):
        s = slug(text)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def sections(root, rel):
    """The file cut at its headings: [(heading text, level, body lines)]."""
    lines = open(os.path.join(root, rel), encoding="utf-8").read().split("\n")
    marks = headings(root, rel)
    out = []
    for k, (level, text, line) in enumerate(marks):
        end = marks[k + 1][2] - 1 if k + 1 < len(marks) else len(lines)
        out.append((text, level, lines[line:end]))
    return out
