"""Docs that cannot drift: the README and the manual are checked against the code they describe.

* Every ``convvit ...`` command line (in code blocks and inline code) names a real command, and every option on it
  is one that command accepts, as the CLI's own parsers and fast option checker say.
* Every Python block marked ``<!-- runnable -->`` runs.
* Every recorded result a page names (``benchmarks/results/*.csv``, files under ``docs/``) exists.
"""
from __future__ import annotations

import argparse
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")])

# Options that docs show mistyped on purpose (the start-up table times the answer to a typo): the checker must
# refuse them, which the test asserts instead of skipping them.
MISTYPED_ON_PURPOSE = {"--ckpt_pth", "--modle.name"}

# LightningCLI's own top-level options and the two convvit adds in training/lightning_cli.py; the dotted
# --group.key options are the fast checker's business.
LIGHTNING_CLI_OPTIONS = {"--config", "--print_config", "--ckpt_path", "--seed_everything", "--name", "--test_after_fit"}
EVERY_COMMAND_OPTIONS = {"--help", "--debug", "--version"}
LIGHTNING_COMMANDS = {"fit", "validate", "test"}


def unknown_fit_option(argv: list[str]) -> str | None:
    """The fast option checker of ``convvit fit | validate | test`` (answers a typo before Lightning's import);
    the one place this test names it."""
    from convvit.training.option_names import unknown_option

    return unknown_option(argv)


# ----------------------------------------------------------------------------- finding what the docs say
def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _blocks(path: Path):
    """(language, first line number, text, marked runnable) of every fenced code block."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"\s*```(\w*)", lines[i])
        if match:
            runnable = i > 0 and lines[i - 1].strip() == "<!-- runnable -->"
            start = i + 1
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                i += 1
            yield match.group(1), start + 1, "\n".join(lines[start:i]), runnable
        i += 1


def _prose(path: Path) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"```.*?```", "", path.read_text(), flags=re.S)


def _command_lines(path: Path) -> list[tuple[str, str]]:
    """(where, command line) for every ``convvit ...`` in the page's shell/text blocks and inline code."""
    found = []
    for language, line_no, text, _ in _blocks(path):
        if language == "python":
            continue
        for offset, line in enumerate(text.replace("\\\n", " ").splitlines()):
            line = line.split(" # ")[0].strip()
            if line.startswith("#"):
                continue
            for command in re.split(r"(?=\bconvvit\s)", line)[1:]:
                found.append((f"{_relative(path)}:{line_no + offset}", command))
    for span in re.findall(r"`([^`]+)`", _prose(path)):
        span = " ".join(span.split())
        for command in re.split(r"(?=(?<![\w./-])convvit\s)", span)[1:]:
            found.append((f"{_relative(path)} (inline)", command))
    return found


COMMAND_LINES = [pytest.param(command, id=f"{where}: {command[:60]}") for path in PAGES
                 for where, command in _command_lines(path)]


# ----------------------------------------------------------------------------- what the CLI accepts
def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    options = set()
    for action in parser._actions:
        options.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _option_strings(sub)
    return options


@cache
def _argparse_options(command: str) -> set[str] | None:
    """The options of a command that parses with argparse; None for the LightningCLI commands."""
    if command in LIGHTNING_COMMANDS:
        return None
    if command == "explain":
        from convvit.explain.command import build_distance_parser, build_parser

        return _option_strings(build_parser()) | _option_strings(build_distance_parser())
    if command in ("plot", "sweep"):
        import importlib

        return _option_strings(importlib.import_module(f"convvit.cli.{command}").build_parser())
    from convvit.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return _option_strings(subparsers.choices[command])


def _command_names(tokens: list[str]) -> list[str]:
    """``fit``, ``fit|validate|test`` or ``validate | test`` -> the command names the line stands for."""
    names = tokens[0].split("|")
    rest = tokens[1:]
    while len(rest) >= 2 and rest[0] == "|":
        names.append(rest[1])
        rest = rest[2:]
    return [n for n in names if n]


def _problems(command_line: str) -> list[str]:
    from convvit.cli import COMMANDS

    known = {c.name for c in COMMANDS}
    tokens = [t.strip("[]") for t in command_line.split()[1:]]
    if not tokens or not tokens[0][:1].islower():  # `convvit COMMAND --help`, `convvit ...`, `convvit --help`
        return []
    names = _command_names(tokens)
    problems = [f"unknown command {n!r} (commands: {', '.join(sorted(known))})" for n in names if n not in known]
    options = [t.split("=", 1)[0] for t in tokens if t.startswith("--") and len(t) > 2]
    for name in (n for n in names if n in known):
        accepted = _argparse_options(name)
        for option in options:
            if option in EVERY_COMMAND_OPTIONS or option in MISTYPED_ON_PURPOSE:
                continue
            dotted = "." in option
            if accepted is None or (name == "sweep" and dotted):  # sweep hands dotted options to its trials
                if dotted:
                    problem = unknown_fit_option([option])
                    if problem:
                        problems.append(f"convvit {name}: {problem}")
                elif option not in LIGHTNING_CLI_OPTIONS:
                    problems.append(f"convvit {name}: unknown option {option}")
            elif option not in accepted:
                problems.append(f"convvit {name}: unknown option {option}")
    return problems


# ----------------------------------------------------------------------------- the tests
def test_the_docs_have_command_lines_to_check():
    assert len(COMMAND_LINES) > 50  # the finder finds them: README and every page name commands


@pytest.mark.parametrize("command_line", COMMAND_LINES)
def test_command_line_uses_real_commands_and_options(command_line):
    assert not _problems(command_line), command_line


@pytest.mark.parametrize("line, problem", [
    ("convvit fit --modle.name x", "--modle.name"),
    ("convvit fitt --config a.yaml", "fitt"),
    ("convvit predict --ckpt_pth x.ckpt photos/", "--ckpt_pth"),
    ("convvit explain distance --ckpt_path a --data d --outptu x.png", "--outptu"),
    ("convvit sweep --config a.yaml --models m --out o --trainer.max_epoch 2", "max_epoch"),
    ("convvit validate | test --config a.yaml --ckpt_pat x", "--ckpt_pat"),
])
def test_the_check_catches_mistakes(line, problem, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "MISTYPED_ON_PURPOSE", set())
    problems = _problems(line)
    assert problems and problem in " ".join(problems), problems


def test_options_mistyped_on_purpose_are_refused_by_the_checker():
    assert unknown_fit_option(["--modle.name", "x"])
    assert "--ckpt_pth" not in _argparse_options("predict")


RUNNABLE = [pytest.param(text, id=f"{_relative(path)}:{line_no}") for path in PAGES
            for language, line_no, text, runnable in _blocks(path) if runnable]


def test_the_readme_has_a_runnable_example():
    assert any("README.md" in p.id for p in RUNNABLE)


@pytest.mark.parametrize("code", RUNNABLE)
def test_runnable_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_recorded_results_named_in_the_docs_exist(page):
    named = set(re.findall(r"(?<![\w/])((?:benchmarks/results|docs)/[\w./-]+\.(?:csv|png|md))", page.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{_relative(page)} names files that are not in the repository: {missing}"


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "CONTRIBUTING.md"], ids=_relative)
def test_links_outside_the_manual_point_at_files(page):
    # mkdocs build --strict checks the links of docs/; the README and CONTRIBUTING.md are read on the forge
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _prose(page))
    missing = sorted(t for t in targets if "://" not in t and not (page.parent / t).exists())
    assert not missing, f"{_relative(page)} links to files that are not in the repository: {missing}"
