"""The pyg-sm command: flags built from the configs and the model
registry, the mapping to pyg_sm.runs configs, exit statuses, and the
commands run as processes (torchrun, Ctrl-C, the viewer)."""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pyg_sm.runs
from pyg_sm.cli import COMMANDS, config_from_args, main, parser
from pyg_sm.models import MODELS, build_model
from pyg_sm.models.registry import SM_ABMIL
from pyg_sm.runs import (
    DemoConfig,
    HeatmapConfig,
    InspectConfig,
    ScoreConfig,
    TrainConfig,
    ViewConfig,
)
from pyg_sm.train import model_weights
from run_helpers import small_cohort

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return small_cohort(tmp_path_factory.mktemp('cohort'), num_slides=8)


def subcommand_parsers(argv=None):
    commands = next(a for a in parser(argv)._actions
                    if isinstance(a, argparse._SubParsersAction))
    return commands.choices


def config_of(*argv):
    argv = list(argv)
    return config_from_args(parser(argv).parse_args(argv))


# Flags --------------------------------------------------------------------

@pytest.mark.parametrize('model', list(MODELS))
def test_every_option_is_a_flag_with_help_and_every_flag_has_help(model):
    argv = ['train', 'data', '--model', model]
    train = subcommand_parsers(argv)['train']
    flags = {o for a in train._actions for o in a.option_strings}
    for option in MODELS[model].options:
        assert ('--' + option.name.replace('_', '-') in flags) == \
            option.flag, option.name
    smooths = model.startswith('sm_')  # the Sm models: every Sm option
    for name in ('tol', 'max_iter', 'on_nonconvergence', 'fused'):
        assert ('--' + name.replace('_', '-') in flags) == smooths
    for name, command in subcommand_parsers(argv).items():
        bare = [a.option_strings or a.dest for a in command._actions
                if not a.help]
        assert not bare, (name, bare)
        text = command.format_help()
        assert not re.findall(r'^  +--[a-z-]+( [A-Z_]+)?$', text, re.M), name


def test_help_texts_come_from_the_configs_and_the_docstrings():
    train = subcommand_parsers()['train'].format_help()
    field = TrainConfig.__dataclass_fields__['val_fraction']
    assert field.metadata['help'].split()[0] in train
    assert '(default: 0.25)' in train
    # An option's help is its constructor docstring's Args: entry.
    assert 'Size of the attention network (default: 128)' in train
    for name, preset in SM_ABMIL.presets.items():
        assert f"'{name}'" in train
    assert "'demo'" in train and 'lr=0.002' in train  # the recipe


def test_model_help_lists_that_models_options_only(capsys):
    with pytest.raises(SystemExit) as stop:
        main(['train', '--model', 'sm_transformer_abmil', '--help'])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert '--transf-att-dim' in text and '--pool-sm-post' in text
    assert '--att-dim ' not in text and '--sm-post' not in text
    assert '--preset {sm,reference}' in text
    main_help = subcommand_parsers(['train'])['train'].format_help()
    assert '--att-dim' in main_help and '--transf-att-dim' not in main_help


def test_presets_and_flags():
    def options_of(*argv):
        return config_of('train', 'data', *argv).resolved_model_options()

    default = options_of()
    assert default == SM_ABMIL.resolve('sm')
    assert default['sm_layers'] == 1 and default['sm_post'] is True
    abmil = options_of('--preset', 'abmil')
    assert abmil['sm_layers'] == 0 and not abmil['sm_post'] \
        and not abmil['sm_pre']
    # A flag given overrides the preset, in both directions.
    assert options_of('--preset', 'abmil', '--sm-post')['sm_post'] is True
    assert options_of('--no-sm-post')['sm_post'] is False
    options = options_of('--sm-mode', 'exact', '--tol', '1e-6', '--max-iter',
                         '50', '--on-nonconvergence', 'raise', '--no-fused',
                         '--sm-alpha', '0.25')
    sm = build_model(4, **options).pool.sm
    assert (sm.mode, sm.tol, sm.max_iter, sm.on_nonconvergence, sm.fused,
            sm.fixed_alpha) == ('exact', 1e-6, 50, 'raise', False, 0.25)


@pytest.mark.parametrize('argv, words', [
    (['--sm-alpha', 'high'], "'trainable' or a float"),
    (['--sm-mode', 'dense'], 'invalid choice'),
    (['--preset', 'fancy'], 'invalid choice'),
    (['--epochs', 'many'], 'invalid int value'),
    (['--model', 'sm_transformer_abmil', '--preset', 'abmil'],
     'invalid choice'),
])
def test_bad_flags_are_messages(argv, words, capsys):
    with pytest.raises(SystemExit) as stop:
        main(['train', 'data', *argv])
    assert stop.value.code == 2
    assert words in capsys.readouterr().err


# The mapping to configs ----------------------------------------------------

def test_each_command_maps_to_its_config():
    assert config_of('train', 'data') == TrainConfig(data_dir='data')
    assert config_of(
        'train', 'data', '--out', 'o', '--epochs', '3', '--lr', '0.01',
        '--classes', 'b,a', '--connectivity', '4', '--in-memory',
        '--att-dim', '16', '--preset', 'abmil', '--split-file', 's.csv',
        '--monitor', 'last', '--deterministic') == TrainConfig(
        data_dir='data', out='o', epochs=3, lr=0.01, classes=['b', 'a'],
        connectivity=4, in_memory=True, model_options={'att_dim': 16},
        preset='abmil', split_file='s.csv', monitor='last',
        deterministic=True)
    assert config_of('train', 'data', '--recipe', 'demo', '--lr', '0.1') == \
        TrainConfig(data_dir='data', lr=0.1, val_fraction=0.3,
                    monitor='last', validate_every=0, in_memory=True)
    for command in ('evaluate', 'predict'):
        assert config_of(command, 'data', '--checkpoint', 'c.pt',
                         '--slide-ids', 'ids.txt', '--radius', '3',
                         '--missing-slides', 'skip') == \
            ScoreConfig(data_dir='data', checkpoint='c.pt',
                        slide_ids='ids.txt', radius=3.0,
                        missing_slides='skip')
    assert config_of('heatmap', 'a', 'b', '--top-k', '2') == HeatmapConfig(
        runs=['a', 'b'], top_k=2)
    assert config_of('view', 'a', '--port', '8000') == ViewConfig(
        runs=['a'], port=8000)
    assert config_of('demo', '--signal', '1.5') == DemoConfig(signal=1.5)
    assert config_of('inspect', 'data', '--patches-dir', 'p', '--worst',
                     '3') == InspectConfig(data_dir='data', patches_dir='p',
                                           worst=3)
    assert config_of('evaluate', 'data', '--checkpoint', 'c.pt',
                     '--exclusion-classes', 'Necrosis,Artifact',
                     '--partial-cases', '--overwrite') == ScoreConfig(
        data_dir='data', checkpoint='c.pt',
        exclusion_classes=['Necrosis', 'Artifact'], partial_cases=True,
        overwrite=True)
    assert config_of('train', 'data', '--censorship-column', 'censorship',
                     '--missing-outcomes', 'skip', '--split-by', 'tss',
                     '--allow-sparse-graphs') == TrainConfig(
        data_dir='data', censorship_column='censorship',
        missing_outcomes='skip', split_by='tss', allow_sparse_graphs=True)
    assert config_of(
        'train', 'data', '--patience', '3', '--lr-scheduler', 'cosine',
        '--optimizer', 'adamw', '--precision', 'bf16-mixed',
        '--accumulate-grad-batches', '4', '--class-weights', 'balanced',
        '--balanced-sampling', '--logger', 'csv,tensorboard',
        '--num-nodes', '2') == TrainConfig(
        data_dir='data', patience=3, lr_scheduler='cosine',
        optimizer='adamw', precision='bf16-mixed', accumulate_grad_batches=4,
        class_weights='balanced', balanced_sampling=True,
        logger=['csv', 'tensorboard'], num_nodes=2)
    assert set(COMMANDS) == {'demo', 'train', 'evaluate', 'predict',
                             'heatmap', 'view', 'inspect'}


def test_print_config_writes_what_config_reads_back(tmp_path, capsys):
    argv = ['train', 'data', '--epochs', '7', '--att-dim', '16',
            '--logger', 'csv,tensorboard', '--task', 'survival',
            '--censorship-column', 'censorship', '--recipe', 'demo']
    assert main([*argv, '--print-config']) == 0
    text = capsys.readouterr().out
    path = tmp_path / 'run.yaml'
    path.write_text(text)
    assert config_of('train', '--config', str(path)) == config_of(*argv)
    # Flags override the file; the file's model options merge with them.
    changed = config_of('train', '--config', str(path), '--epochs', '9',
                        '--att-dim', '32', '--out', 'elsewhere')
    assert (changed.epochs, changed.model_options, str(changed.out)) == \
        (9, {'att_dim': 32}, 'elsewhere')
    assert changed.censorship_column == 'censorship'
    assert not (tmp_path / 'pyg_sm_run').exists()  # printing trains nothing


@pytest.mark.parametrize('content, words', [
    ('epochs: 3\nlearning_rate: 0.1\n',
     "unknown setting(s) ['learning_rate']"),
    ('- epochs\n', 'expected a mapping'),
    ('epochs: [1\n', 'not YAML'),
    ('epochs: 0\ndata_dir: d\n', "'epochs' (--epochs) must be"),
    ('epochs: 3\n', 'DATA_DIR is required'),
])
def test_bad_config_files_are_one_line_errors(tmp_path, capsys, content,
                                              words):
    path = tmp_path / 'run.yaml'
    path.write_text(content)
    argv = ['train', '--config', str(path)]
    if 'DATA_DIR' not in words and 'data_dir' not in content:
        argv.insert(1, 'data')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert main(['train', 'data', '--config', str(tmp_path / 'none.yaml')]) \
        == 2
    assert 'no such file' in capsys.readouterr().err


def test_each_command_calls_its_run_function(monkeypatch):
    called = {}
    for name in COMMANDS:
        monkeypatch.setattr(pyg_sm.runs, name,
                            lambda config, name=name: called.update(
                                {name: config}))
    assert main(['heatmap', 'a']) == 0
    assert main(['predict', 'data', '--checkpoint', 'c.pt']) == 0
    assert called == {'heatmap': HeatmapConfig(runs=['a']),
                      'predict': ScoreConfig(data_dir='data',
                                             checkpoint='c.pt')}


# Exit statuses -------------------------------------------------------------

def test_user_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(['train', str(tmp_path), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('pyg-sm train: ') and 'no labels file' in err
    assert err.count('\n') == 1
    assert main(['train', 'data', '--epochs', '0']) == 2
    assert "'epochs' (--epochs) must be" in capsys.readouterr().err
    assert main(['train', 'data', '--model', 'sm_transformer_abmil',
                 '--att-dim', '4']) == 2
    assert '--att-dim belongs to --model sm_abmil' in \
        capsys.readouterr().err
    assert main(['view', str(tmp_path)]) == 2
    assert 'holds no scored slides' in capsys.readouterr().err
    # A bad --device is one line, before anything is written.
    for device, words in (('gpu', "--device 'gpu'"),
                          ('cuda:99', 'cuda:99')):
        assert main(['train', str(tmp_path), '--device', device, '--out',
                     str(tmp_path / 'd')]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count('\n') == 1
        assert not (tmp_path / 'd').exists()


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(config):
        raise ValueError('a bug in the library')  # not a PygSmError

    monkeypatch.setattr(pyg_sm.runs, 'train', broken)
    with pytest.raises(ValueError, match='a bug in the library'):
        main(['train', 'data'])
    done = subprocess.run(
        [sys.executable, '-c', 'import sys, pyg_sm.runs\n'
         'def broken(config): raise KeyError("bug")\n'
         'pyg_sm.runs.train = broken\n'
         'from pyg_sm.cli import main\n'
         'raise SystemExit(main(["train", "data"]))'],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and 'Traceback' in done.stderr


def test_the_command_and_the_python_call_give_the_same_run(cohort,
                                                           tmp_path):
    assert main(['train', str(cohort), '--out', str(tmp_path / 'cli'),
                 '--epochs', '2', '--att-dim', '8', '--heatmaps', '0']) == 0
    pyg_sm.runs.train(TrainConfig(data_dir=cohort, out=tmp_path / 'python',
                                  epochs=2, model_options={'att_dim': 8},
                                  heatmaps=0))
    cli = pyg_sm.runs.RunFolder(tmp_path / 'cli')
    python = pyg_sm.runs.RunFolder(tmp_path / 'python')
    for key in ('validation', 'split', 'options', 'classes'):
        assert cli.results()[key] == python.results()[key], key
    a = torch.load(cli.checkpoint_path, weights_only=True)['state_dict']
    b = torch.load(python.checkpoint_path, weights_only=True)['state_dict']
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert cli.results()['command'][:3] == ['pyg-sm', 'train', str(cohort)]
    assert python.results()['command'] is None  # a Python call


# Commands as processes -----------------------------------------------------

def test_train_under_torchrun(tmp_path):
    from pyg_sm import make_synthetic_slides

    data = make_synthetic_slides(tmp_path / 'data', num_slides=8,
                                 feature_dim=6)
    out = tmp_path / 'run'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    done = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc-per-node', '2', '-m', 'pyg_sm', 'train', str(data),
         '--out', str(out), '--epochs', '2', '--att-dim', '8',
         '--heatmaps', '1'], capture_output=True, text=True, env=env,
        timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / 'results.json').read_text())
    assert results['world_size'] == 2
    assert (out / 'checkpoint.pt').is_file()
    assert done.stdout.count('checkpoint:') == 1  # written by rank 0 only


TRAIN_SETTINGS = ['--epochs', '30', '--att-dim', '8', '--heatmaps', '0',
                  '--batch-size', '2']


def cli_train(data, out, *extra):
    return [sys.executable, '-m', 'pyg_sm', 'train', str(data), '--out',
            str(out), *TRAIN_SETTINGS, *extra]


def python_train(data, out, resume=False):
    r"""The same run through pyg_sm.runs.train, in a process of its own."""
    return [sys.executable, '-c',
            'from pyg_sm.runs import TrainConfig, train\n'
            f'train(TrainConfig(data_dir={str(data)!r}, out={str(out)!r}, '
            "epochs=30, model_options={'att_dim': 8}, heatmaps=0, "
            f'batch_size=2, resume={resume}))']


def final_weights(run):
    return model_weights(torch.load(run / 'last.pt', weights_only=True))


def interrupt_and_resume(cohort, tmp_path, signum, command):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    whole = tmp_path / 'whole'
    subprocess.run(command(cohort, whole), check=True, env=env,
                   capture_output=True, cwd=ROOT, timeout=600)
    run = tmp_path / 'run'
    process = subprocess.Popen(command(cohort, run), env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 300
    while not (run / 'last.pt').exists() and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    state = torch.load(run / 'last.pt', weights_only=True)
    assert state['epoch'] < 30, 'the run ended before it was interrupted'
    again = command(cohort, run, '--resume') if command is cli_train else \
        command(cohort, run, resume=True)
    resumed = subprocess.run(again, env=env, capture_output=True, text=True,
                             cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'resuming from' in resumed.stderr
    expected, actual = final_weights(whole), final_weights(run)
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    return process.returncode, err, state


def test_killed_run_resumes_to_the_same_weights(cohort, tmp_path):
    code, _, state = interrupt_and_resume(cohort, tmp_path, signal.SIGKILL,
                                          python_train)
    assert code == -signal.SIGKILL and state['step'] == 0


def test_sigint_saves_says_how_to_resume_and_exits_130(cohort, tmp_path):
    code, err, state = interrupt_and_resume(cohort, tmp_path, signal.SIGINT,
                                            cli_train)
    assert code == 130 and state['step'] > 0  # saved within the epoch
    assert 'resume with: pyg-sm train' in err and '--resume' in err
    results = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert results['status'] == 'finished'  # after the resume


def test_view_command_prints_the_url_and_serves(scored_cohort, tmp_path):
    data, runs = scored_cohort
    process = subprocess.Popen(
        [sys.executable, '-m', 'pyg_sm', 'view', *map(str, runs),
         '--slides-dir', str(data / 'slides'), '--log-requests',
         '--host', '127.0.0.1', '--port', '0'], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
        first = process.stdout.readline()
        url = process.stdout.readline().split()[1]
        assert '4 slides (4 with images), 2 run(s)' in first
        assert url.startswith('http://127.0.0.1:')
        host, port = url[len('http://'):].rstrip('/').split(':')
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request('GET', '/api/slides')
        assert connection.getresponse().status == 200
    finally:
        process.send_signal(2)  # Ctrl-C
        process.wait(30)
    assert process.returncode == 0
    assert 'GET /api/slides' in process.stderr.read()  # --log-requests




def test_slide_ids_from_a_pipe(tmp_path):
    """--slide-ids <(...) is a pipe, which reads once."""
    from pyg_sm.runs._common import slide_list

    for content in (b'slide_id,note\na,x\nb,y\n', b'a\nb\n'):
        read, write = os.pipe()
        os.write(write, content)
        os.close(write)
        try:
            assert slide_list(f'/dev/fd/{read}') == ['a', 'b']
        finally:
            os.close(read)
