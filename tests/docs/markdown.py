"""Fenced code blocks of the repository's Markdown documents, and a static check of cluster commands."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from testbed.config import repo_root

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.M | re.S)
# Verbs the documents may use; anything else is a typo or an unreviewed command.
PULUMI_VERBS = {"stack", "preview", "up", "destroy", "config", "login", "refresh", "policy", "plugin"}
KUBECTL_VERBS = {"get", "describe", "logs", "apply", "port-forward", "delete", "rollout", "exec", "top", "auth"}
OTHER_TOOLS = {"export", "eval", "cat", "aws", "docker", "helm", "curl", "echo", "cd", "python", "pip", ".venv/bin/pip"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    info: str  # the fence's info string: "sh local", "python sdk", "sh cluster", ...
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(repo_root())}:{self.line}"


def documents() -> list[Path]:
    root = repo_root()
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def blocks(info: str | None = None) -> list[Block]:
    found = []
    for path in documents():
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            block = Block(path, line, match.group(1).strip(), match.group(2))
            if info is None or block.info == info:
                found.append(block)
    return found


def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell block: comments, redirections and `&` dropped, split at ; && |."""
    found = []
    for raw in re.sub(r"\\\n\s*", " ", text).splitlines():  # a backslash-continued line is one line
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        inner = re.findall(r"\$\(([^()]*)\)", line)  # $(command substitution): checked as commands too
        line = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", line)
        found.extend(commands("\n".join(inner)) if inner else [])
        for part in re.split(r";|&&|\|\||(?<![|])\|(?![|])", line):
            part = re.sub(r"\s[0-9]?>\s*\S+", "", part).strip().rstrip("&").strip()
            if not part:
                continue
            words = shlex.split(part)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value prefix or assignment
                words = words[1:]
            if words:
                found.append(words)
    return found


def makefile_targets() -> set[str]:
    text = (repo_root() / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z][a-z0-9-]*):", text, re.M)}


def check_command(words: list[str], parser: argparse.ArgumentParser, targets: set[str]) -> str | None:
    """Why a documented cluster command is wrong, or None."""
    # a synopsis's optional parts (``[--json]``, ``[--tenant ID]``) are checked as if given
    words = [w for w in (word.strip("[]") for word in words) if w]
    tool = words[0]
    if tool in ("testbed", ".venv/bin/testbed"):
        argv = words[1:]
        argv = argv[: argv.index("--")] if "--" in argv else argv  # the job's command, as the CLI splits it
        try:
            parser.parse_args(argv)
        except SystemExit:
            return f"`{shlex.join(words)}`: not a valid testbed command line"
        return None
    if tool == "make":
        missing = [w for w in words[1:] if "=" not in w and not w.startswith("-") and w not in targets]
        return f"`{shlex.join(words)}`: no Makefile target {missing}" if missing else None
    if tool == "pulumi":
        verbs = [w for w in words[1:] if not w.startswith("-")]
        return None if verbs and verbs[0] in PULUMI_VERBS else f"`{shlex.join(words)}`: pulumi verb not known"
    if tool == "kubectl":
        rest = words[1:]
        while rest and rest[0].startswith("-"):  # -n NAMESPACE before the verb
            rest = rest[2:] if rest[0] in ("-n", "--namespace", "--context") else rest[1:]
        return None if rest and rest[0] in KUBECTL_VERBS else f"`{shlex.join(words)}`: kubectl verb not known"
    if tool in OTHER_TOOLS:
        return None
    return f"`{shlex.join(words)}`: {tool!r} is not a known command for the documents"
