"""Running a command: timestamped logging, one-line errors, `--help` that shows defaults.

Each script is `main(argv)` over small functions; `run_cli` turns a `UserError`
into a one-line message and a non-zero exit, so bad input never ends in a bare
traceback.
"""
import argparse
import logging
import sys


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line."""


def setup_logging(verbose=False):
    """Timestamped logging to stderr, once per process."""
    root = logging.getLogger()
    if not any(getattr(h, "_cdiscount", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handler._cdiscount = True
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def run_cli(main, argv=None):
    """Run `main(argv)`; print a UserError as `error: ...` and exit 2."""
    setup_logging()
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # disk full, permissions: one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`--help` keeps the module docstring's line breaks and shows every option's default
    (not for on/off flags, nor where the default is None: the help text says what happens then)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:  # 0 is shown
            return action.help
        return super()._get_help_string(action)


class RefusedFlag(argparse.Action):
    """An original solution's flag whose meaning changed here (for example a pickle path).

    Accepted so that its command lines parse, but naming it stops the run with one line
    that says what to use instead: raised while parsing, before any work, never a silently
    different behaviour. `parser.add_argument("--md5-dict-pkl", action=RefusedFlag, explanation="...")`
    """

    def __init__(self, option_strings, dest, explanation, help=None, **kwargs):
        self.explanation = explanation
        super().__init__(option_strings, dest, help=help or f"the original's flag, refused here: {explanation}",
                         **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        raise UserError(f"{option_string} {values}: {self.explanation}")
