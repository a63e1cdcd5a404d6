"""The `latentlab` command line: `latentlab doctor | bench | reconstruct | train`.

Each command lives in its own module with `add_arguments(parser)` and `run(args) -> int`; it is imported
only when used, so `latentlab doctor` starts quickly. The lessons name the commands: lesson 02 the `train vae` runs
that made the shipped VAE, lesson 07 `bench`, lesson 08 `train unet`.
"""

import argparse
import importlib
import sys

from latentlab.errors import InputError

COMMANDS = {
    "doctor": "latentlab.doctor",
    "bench": "latentlab.pixel_vs_latent",
    "reconstruct": "latentlab.reconstruct",
    "train": "latentlab.train_cli",
    "eval": "latentlab.evaluate",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latentlab", description="The latentlab course's command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    words = [a for a in argv if not a.startswith("-")]
    # import only the command asked for (all of them for a bare `latentlab --help`)
    wanted = [words[0]] if words and words[0] in COMMANDS else list(COMMANDS)
    command = wanted[0] if len(wanted) == 1 else "command"
    try:  # Ctrl-C while the command starts (its imports take seconds) ends it with one line too
        modules = {}
        for name, module_name in COMMANDS.items():
            if name not in wanted:
                sub.add_parser(name)
                continue
            module = importlib.import_module(module_name)
            doc = (module.__doc__ or "").strip().splitlines()[0]
            modules[name] = module
            module.add_arguments(sub.add_parser(name, help=doc, description=doc))
        args = parser.parse_args(argv)
        return int(modules[args.command].run(args) or 0)
    except InputError as err:
        print(f"latentlab {command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"latentlab {command}: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
