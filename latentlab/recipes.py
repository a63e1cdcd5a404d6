"""Training recipes as data: settings dataclasses whose fields carry their help and valid range, and recipe files.

Each training job has one settings dataclass (`VAETraining`, `DenoiserTraining`), written like nanoGPT's GPTConfig:
one field per setting with its default and a comment. This module turns such a class into command-line flags (one
set of defaults, range-checked, one sentence when wrong), a run's settings back into the command that reproduces
it, and reads recipe files: `recipes/<model>.toml` in the repository holds the exact settings of a shipped model,
one [[stage]] per run; a stage names an earlier stage's output by name, never by path, and the last stage makes
the model the file is named for. Serves `latentlab train` (lessons 02, 03 and 08 train with the same code).
A little over 300 lines: flags, commands and recipe files are three views of one settings class, kept together.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import subprocess
import tomllib
import types
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from latentlab.errors import InputError

ROOT = Path(__file__).resolve().parent.parent  # the repository, when latentlab runs from a checkout


# ---- a setting: a dataclass field with its help, valid range, kind and the smaller value of a smoke run


@dataclass(frozen=True)
class Rule:
    """a valid range: `test(value)`, and the words for it ("{kind}" becomes "an integer", "a number", ...)"""

    test: Callable[[Any], bool]
    text: str


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f"{{kind}} >= {low}")


def above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"{{kind}} > {low}")


# where a setting belongs: "setting" shapes what is learned; "model" is architecture (a checkpoint given to --init
# brings its own); "path" is where files are (a recipe names outputs instead); "machine" is where it runs and what
# only this machine holds, e.g. a folder of your own photos (not in recipes: the same recipe runs on a CPU or a GPU,
# from what the package ships)
Kind = Literal["setting", "model", "path", "machine"]


def setting(default: Any, help: str, rule: Rule | None = None, smoke: Any = None, kind: Kind = "setting"):
    """a dataclass field: default, help text, valid range, the cap `--smoke` puts on it, and its kind"""
    return field(default=default, metadata={"help": help, "rule": rule, "smoke": smoke, "kind": kind})


def flag(name: str) -> str:
    """field name -> its command-line flag: batch_size -> --batch-size"""
    return "--" + name.replace("_", "-")


def _parts(tp) -> tuple[Any, bool, tuple]:
    """a field's type -> (base type, may be None, choices): `int | None` -> (int, True, ())"""
    optional = False
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional, tp = len(args) < len(get_args(tp)), args[0]
    if get_origin(tp) is Literal:
        return str, optional, get_args(tp)
    return tp, optional, ()


def _words(base, choices: tuple, text: bool) -> str:
    """what a value of this type looks like, for error messages"""
    if choices:
        return "one of " + ", ".join(choices)
    if get_origin(base) is tuple:
        item, *rest = get_args(base)
        count = "" if rest == [Ellipsis] else f"{len(rest) + 1} "
        numbers = "integers" if item is int else "numbers"
        return f"{count}{numbers} joined by commas" if text else f"a list of {count}{numbers}"
    return {int: "an integer", float: "a number", str: "a string", bool: "yes or no" if text else "true or false"}[base]


def _from_text(text: str, base, choices: tuple):
    """command-line text -> a value of the field's type; ValueError if it is not one"""
    if choices and text not in choices:
        raise ValueError(text)
    if base is bool:
        if text.lower() not in ("yes", "no"):
            raise ValueError(text)
        return text.lower() == "yes"
    if get_origin(base) is tuple:
        item, *rest = get_args(base)
        values = tuple(item(part) for part in text.split(","))
        return values if rest == [Ellipsis] or len(values) == len(rest) + 1 else _fail(text)
    return base(text)


def _from_data(value, base, choices: tuple):
    """a recipe's (TOML) or Python value -> the field's type (lists become tuples, ints floats); ValueError if not"""
    if isinstance(value, bool) != (base is bool):
        raise ValueError(value)
    if choices:
        return value if value in choices else _fail(value)
    if get_origin(base) is tuple:
        item, *rest = get_args(base)
        if not isinstance(value, (list, tuple)) or (rest != [Ellipsis] and len(value) != len(rest) + 1):
            raise ValueError(value)
        return tuple(_from_data(v, item, ()) for v in value)
    if base is float and isinstance(value, int):
        return float(value)
    return value if isinstance(value, base) else _fail(value)


def _fail(value):
    raise ValueError(value)


def convert(f, tp, value, label: str, text: bool = False):
    """one setting's value -> checked and typed, or an InputError that says what `label` must be"""
    base, optional, choices = _parts(tp)
    if value is None and optional and not text:
        return None
    rule = f.metadata.get("rule")
    words = rule.text.format(kind=_words(base, choices, text)) if rule else _words(base, choices, text)
    try:
        typed = _from_text(value, base, choices) if text else _from_data(value, base, choices)
        finite = not isinstance(typed, float) or math.isfinite(typed)  # nan and inf are never settings
        if finite and (rule is None or rule.test(typed)):
            return typed
    except (ValueError, TypeError, KeyError):
        pass
    raise InputError(f"{label} must be {words}, not {value if text else repr(value)}.")


def validate(settings) -> None:
    """check and type every field of a settings dataclass in place (its __post_init__ calls this)"""
    hints = get_type_hints(type(settings))
    for f in fields(settings):
        setattr(settings, f.name, convert(f, hints[f.name], getattr(settings, f.name), f.name))


# ---- settings <-> command line


class OneLineParser(argparse.ArgumentParser):
    """an ArgumentParser whose errors are one line (no usage block), exit 2; or an InputError with raise_errors"""

    raise_errors = False

    def error(self, message: str):
        message = re.sub(r"^argument [^:]+: (?=--)", "", message)  # "argument --lr: --lr must be ..." -> "--lr must..."
        if self.raise_errors:
            raise InputError(message)
        self.exit(2, f"{self.prog}: {message}{'' if message.endswith('.') else ' (see --help).'}\n")


def add_flags(parser: argparse.ArgumentParser, cls) -> None:
    """one flag per field of a settings dataclass: --batch-size for batch_size, typed and range-checked"""
    hints = get_type_hints(cls)
    for f in fields(cls):
        base, _, choices = _parts(hints[f.name])

        def parse(text: str, f=f, tp=hints[f.name]):
            try:
                return convert(f, tp, text, flag(f.name), text=True)
            except InputError as err:
                raise argparse.ArgumentTypeError(str(err)) from None

        shown = "" if f.default is None else f" (default: {as_text(f.default)})"
        metavar = ("{" + ",".join(choices) + "}" if choices else "yes|no" if base is bool else "N" if base is int
                   else "X" if base is float else _tuple_metavar(base) if get_origin(base) is tuple else None)
        parser.add_argument(flag(f.name), type=parse, default=f.default, metavar=metavar,
                            help=f.metadata["help"] + shown)


def _tuple_metavar(base) -> str:
    _, *rest = get_args(base)
    return "A,B,..." if rest == [Ellipsis] else ",".join("ABCDEFGH"[: len(rest) + 1])


def from_args(cls, args: argparse.Namespace):
    """parsed flags -> the settings dataclass"""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def as_text(value) -> str:
    """a setting's value as a flag takes it: yes/no, 16,16,32,64, 0.001"""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def command(settings) -> str:
    """the `latentlab train JOB ...` line that reproduces a run, every setting spelled out (unset ones left out)"""
    words = ["latentlab", "train", settings.job]
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None or (f.metadata["kind"] == "model" and getattr(settings, "init", None)):
            continue  # a checkpoint given to --init brings its own architecture
        words += [flag(f.name), as_text(value)]
    return shlex.join(words)


def from_command(cls, line: str):
    """a recorded `latentlab train JOB ...` line (e.g. a manifest's "command") -> the settings it ran with"""
    words = shlex.split(line)
    if words[:3] != ["latentlab", "train", cls.job]:
        raise InputError(f"{line[:40]!r}... is not a `latentlab train {cls.job}` command.")
    parser = OneLineParser(prog=f"latentlab train {cls.job}", add_help=False)
    parser.raise_errors = True
    add_flags(parser, cls)
    return from_args(cls, parser.parse_args(words[3:]))


def smoke(settings):
    """the same run, shrunk: each setting with a smoke cap takes the smaller of its value and the cap"""
    small = {f.name: min(getattr(settings, f.name), f.metadata["smoke"]) for f in fields(settings)
             if f.metadata["smoke"] is not None and getattr(settings, f.name) is not None}
    return replace(settings, **small)


def references(settings) -> list[str]:
    """the names of the path fields a recipe fills with earlier outputs (every path but `out`)"""
    return [f.name for f in fields(settings) if f.metadata["kind"] == "path" and f.name != "out"]


# ---- recipe files


@dataclass
class Stage:
    """one run of a recipe: its name (the file it makes), and its settings with earlier outputs named, not located"""

    recipe: Path
    name: str
    settings: Any


def read_recipe(path: str | Path, jobs: dict[str, type]) -> list[Stage]:
    """recipes/<model>.toml -> its stages, first to last, each checked; InputError naming the file and stage"""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError:
        raise InputError(f"no recipe at {path}; recipes live in the repository's recipes/ folder.") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path} is not valid TOML ({err}).") from None
    if set(data) != {"stage"} or not isinstance(data["stage"], list) or not data["stage"]:
        raise InputError(f"{path} must hold one or more [[stage]] tables and nothing else.")
    stages = []
    for number, table in enumerate(data["stage"], 1):
        where = f"{path} stage {number}"
        table = dict(table)
        name, job = table.pop("name", None), table.pop("job", None)
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise InputError(f"{where}: name must be a lower-case word (the file it makes), not {name!r}.")
        if job not in jobs:
            raise InputError(f"{where} ({name}): job must be one of {', '.join(jobs)}, not {job!r}.")
        cls = jobs[job]
        kinds = {f.name: f.metadata["kind"] for f in fields(cls)}
        for key, value in table.items():
            if key not in kinds or key == "out" or kinds[key] == "machine":
                known = ", ".join(k for k, v in kinds.items() if k != "out" and v != "machine")
                raise InputError(f"{where} ({name}): {key!r} is not a recipe setting of `{job}`; known: {known}.")
            if kinds[key] == "path" and not (isinstance(value, str) and re.fullmatch(r"[a-z][a-z0-9_]*", value)):
                raise InputError(f"{where} ({name}): {key} names an earlier stage's output (e.g. \"vae\"), not a path.")
        try:
            settings = cls(**table, out=f"{name}.safetensors")
        except InputError as err:
            raise InputError(f"{where} ({name}): {err}") from None
        stages.append(Stage(path, name, settings))
    return stages


def git_commit() -> str:
    """the commit latentlab runs from ("-dirty" when files differ from it), or "unknown" outside a git checkout"""
    if not (ROOT / ".git").exists():
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        diff = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    return head.stdout.strip() + ("-dirty" if diff.returncode == 1 else "")


def shown_path(path: str | Path) -> str:
    """a path as a record shows it: relative to the repository (or the working folder) when inside it"""
    path = Path(path)
    for base in (ROOT, Path.cwd()):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)
