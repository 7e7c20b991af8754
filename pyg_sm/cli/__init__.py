r"""The ``pyg-sm`` command: one module per command, each with its parser,
a ``config_from_args`` and one call into :mod:`pyg_sm.runs`.

Exit statuses: 0 on success; 2 for a user error (:class:`~pyg_sm.PygSmError`:
a bad file, setting, label table or split), printed as one line; 130 after
Ctrl-C, with the command that resumes; any other exception is a bug and
keeps its traceback (status 1)."""
import argparse
import shlex
import sys
from typing import List, Optional

from ..runs import Interrupted, PygSmError, __version__, invoked_as
from . import demo, evaluate, heatmap, inspect, predict, train, view
from ._flags import HelpFormatter

#: The commands, in the order --help lists them.
COMMANDS = {'demo': demo, 'train': train, 'heatmap': heatmap, 'view': view,
            'evaluate': evaluate, 'predict': predict, 'inspect': inspect}
#: Exit statuses.
USER_ERROR, INTERRUPTED = 2, 130


def parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    r"""The command line's parser; :obj:`argv` decides the model whose
    options ``train`` offers (``--model``)."""
    root = argparse.ArgumentParser(
        prog='pyg-sm', description='Sm attention MIL on slide graphs.',
        formatter_class=HelpFormatter)
    root.add_argument('--version', action='version',
                      version=f'pyg-sm {__version__}')
    commands = root.add_subparsers(dest='command', required=True)
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, formatter_class=HelpFormatter,
                                  help=module.HELP, description=module.HELP)
        if module is train:
            train.add_arguments(sub, argv)
        else:
            module.add_arguments(sub)
    return root


def config_from_args(args: argparse.Namespace):
    r"""The config of the parsed command."""
    return COMMANDS[args.command].config_from_args(args)


def _resume_command(argv: List[str]) -> str:
    kept = [a for a in argv if a not in ('--overwrite', '--resume')]
    return shlex.join(['pyg-sm', *kept, '--resume'])


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs one command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    root = parser(argv)
    args, unknown = root.parse_known_args(argv)
    module = COMMANDS[args.command]
    try:
        if unknown and module is train:
            train.check_model_flags(unknown, args)
        if unknown:
            root.error(f"unrecognized arguments: {' '.join(unknown)}")
        config = config_from_args(args)
        if getattr(module, 'shown', None) and module.shown(args, config):
            return 0
        with invoked_as(['pyg-sm', *argv]):
            module.run(config)
    except PygSmError as error:
        print(f'pyg-sm {args.command}: {error}', file=sys.stderr)
        return USER_ERROR
    except Interrupted as stop:
        print(f'{stop}\nresume with: {_resume_command(argv)}',
              file=sys.stderr, flush=True)
        return INTERRUPTED
    return 0
