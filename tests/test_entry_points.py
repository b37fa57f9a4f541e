"""Entry points that explain themselves: ``--help`` (absl's spellings) on train.py, eval.py
and sweep.py, ``--show_config``, help with defaults and an example on every ``python -m
imsyn`` task, and derived config defaults (``decay_start`` and the sample interval follow
``num_steps``; every preset of every config validates with any ``num_steps``)."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from imsyn import experiments
from imsyn.training import sweep
from imsyn.training.sweep import config_module

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("cyclegan", "dcgan", "nst", "editing", "writeup")


def _config(name: str, preset: str = ""):
    return config_module(ROOT / "configs" / f"{name}.py").get_config(preset)


def _presets(name: str) -> list[str]:
    mod = config_module(ROOT / "configs" / f"{name}.py")
    return list(getattr(mod, "PRESETS", {"": {}, "quick": {}} if name == "writeup" else {"": {}}))


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("script", ["train.py", "eval.py", "sweep.py"])
def test_help_exits_0_and_lists_the_flags(script):
    p = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    for flag in ("--config", "--workdir", "--show_config", "--config.<field>=<value>"):
        assert flag in p.stdout, flag
    assert p.stdout.startswith(f"usage: python {script}")


@pytest.mark.parametrize("flag", ["-h", "-?", "--helpshort", "--helpfull"])
def test_every_help_spelling(flag, capsys):
    assert experiments.main(["train.py", flag], "train") == 0
    assert experiments.main(["eval.py", "--config=configs/none.py", flag], "eval") == 0
    assert sweep.main(["sweep.py", flag]) == 0
    out = capsys.readouterr().out
    assert out.count("--config") >= 3 and "--sweep" in out
    assert ("--flagfile" in out) == (flag == "--helpfull")  # absl's own flags: helpfull only


def _show(argv, capsys, monkeypatch, mode="train"):
    monkeypatch.setattr("sys.argv", argv)  # ml_collections finds --config.x overrides there
    rc = experiments.main(argv, mode) if mode != "sweep" else sweep.main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = {}
    for ln in out.splitlines():
        if not ln.startswith("#"):
            name, _, rest = ln[1:].partition(" = ")
            lines[name] = rest
    return out, lines


def test_show_config_lists_every_field_value_default_and_meaning(tmp_path, capsys, monkeypatch):
    wd = tmp_path / "run"
    argv = ["train.py", "--config=configs/cyclegan.py", "--config.num_steps=1000",
            f"--workdir={wd}", "--show_config"]  # fmt: skip
    out, lines = _show(argv, capsys, monkeypatch)
    assert set(lines) == set(_config("cyclegan").keys())  # every field, once
    assert lines["num_steps"].startswith("1000") and "(default: 4000)" in lines["num_steps"]
    # decay_start follows the override (2/3 of num_steps), the default is the preset's
    assert lines["decay_start"].startswith("666") and "(default: 2666)" in lines["decay_start"]
    assert "follows num_steps" in lines["decay_start"]
    assert "an integer >= 1" in lines["batch_size"]  # the rule, from the task's FIELDS
    assert "mixed precision" in lines["dtype"]  # the meaning, from the task's FIELDS too
    assert "; the GAN loss" in lines["loss"]  # a common field's meaning (loop.COMMON_FIELDS)
    assert not wd.exists()  # nothing trained, nothing written
    # a value set on the command line wins over the derived one
    argv = ["train.py", "--config=configs/cyclegan.py:full", "--config.num_steps=1000",
            "--config.decay_start=10", "--show_config"]  # fmt: skip
    _, lines = _show(argv, capsys, monkeypatch)
    assert lines["decay_start"].startswith("10 ") and "(default: 5000)" in lines["decay_start"]


def test_show_config_of_nested_configs_and_sweeps(capsys, monkeypatch):
    argv = ["eval.py", "--config=configs/writeup.py:quick", "--config.a3.emoji.num_steps=300",
            "--show_config"]  # fmt: skip
    _, lines = _show(argv, capsys, monkeypatch, mode="eval")
    assert lines["a3.emoji.decay_start"].startswith("150")
    assert lines["a3.dcgan.num_steps"].startswith("1200")
    argv = ["sweep.py", "--config=configs/dcgan.py:quick", "--sweep=loss", "--show_config"]
    out, lines = _show(argv, capsys, monkeypatch, mode="sweep")
    assert lines["num_steps"].startswith("1500") and "# sweep run loss_hinge: loss='hinge'" in out


def test_every_imsyn_task_help_shows_defaults_and_an_example_that_parses(capsys):
    from imsyn.__main__ import EXAMPLES, TASKS, _build_parser, main

    assert set(EXAMPLES) == set(TASKS)
    for task in TASKS:
        with pytest.raises(SystemExit) as e:
            main([task, "--help"])
        out = capsys.readouterr().out
        assert e.value.code == 0 and f"example:\n  {EXAMPLES[task]}" in out, task
        argv = shlex.split(EXAMPLES[task])[3:]  # after "python -m imsyn"
        assert argv[0] == task
        _build_parser(task).parse_args(argv)  # the example is a valid command line
    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: x2y)" in out and "(default: 8)" in out  # options show their defaults


# --------------------------------------------------------------------------- derived defaults


def _check(node) -> None:
    """The task's own check of a training config (schema and cross-field rules; no data)."""
    from imsyn.tasks import cyclegan, dcgan, nst

    if node.task == "cyclegan":
        node.memory_check = False  # the device's memory is not the preset's business
        cyclegan.check(node)
    elif node.task == "dcgan":
        dcgan.check(node)
    elif node.task == "nst":
        nst.validate(node)


def _training_nodes(config, prefix=""):
    """``[(path, node)]`` of the config and its nested task configs that have num_steps."""
    out = [(prefix or "config", config)] if "num_steps" in config else []
    for k in config.keys():
        if hasattr(config[k], "keys"):
            out += _training_nodes(config[k], f"{prefix}{k}.")
    return out


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("num_steps", [1, 10**6])
def test_every_preset_validates_with_any_num_steps(name, num_steps):
    from imsyn.tasks import editing

    for preset in _presets(name):
        config = _config(name, preset)
        if name == "editing":  # an optimization of `steps`, no num_steps
            config.steps = num_steps
            config.generator_workdir = "runs/dcgan"  # required, the user's
            editing.validate(config)
            continue
        nodes = _training_nodes(config)
        assert nodes, (name, preset)
        for path, node in nodes:
            node.num_steps = num_steps
            if "decay_start" in node:
                assert node.decay_start < num_steps, (name, preset, path)
            _check(node)


def test_derived_fields_follow_num_steps_through_overrides_copies_and_json():
    c = _config("cyclegan")
    assert (c.decay_start, c.sample_every) == (2666, 250)  # the defaults are unchanged
    c.num_steps = 1000
    assert (c.decay_start, c.sample_every) == (666, 63)
    (_, run), = sweep.sweep_configs(c, [("short", {"num_steps": 300})])  # fmt: skip
    assert (run.decay_start, c.decay_start) == (200, 666)  # the copy follows its own
    saved = json.loads(json.dumps(c.to_dict()))  # config.json holds plain values
    assert (saved["decay_start"], saved["sample_every"]) == (666, 63)
    c.decay_start = 10  # set by the user: it stays
    c.num_steps = 5000
    assert c.decay_start == 10
    for preset, start in (("full", 5000), ("cats", 5000), ("horse2zebra", 106700)):
        assert _config("cyclegan", preset).decay_start == start  # the presets' schedules
    d = _config("dcgan")
    d.num_steps = 400
    assert d.sample_every == 10 and _config("dcgan", "quick").sample_every == 250


# --------------------------------------------------------------------------- field tables


def _flat(node, prefix=""):
    """Dotted names of a config's (or a field table's) fields; a nested task config (it has
    a ``task``) is one field, its own task declares its fields."""
    out = set()
    for k in node.keys():
        v = node[k]
        if hasattr(v, "keys") and "task" not in v:
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def _dict_literal_duplicates(path: Path) -> list[str]:
    import ast

    dupes = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            dupes += [f"{path.name}:{node.lineno}: {k}" for k in set(keys) if keys.count(k) > 1]
    return dupes


@pytest.mark.parametrize("name", CONFIGS)
def test_every_field_is_declared_once_with_its_default_rule_and_meaning(name):
    from imsyn import validate
    from imsyn.tasks import editing

    mod = experiments.get_experiment({"task": name})
    validate.check_table(mod.FIELDS)  # a Decl with a rule and a one-line meaning, each
    source = Path(mod.__file__)
    assert _dict_literal_duplicates(source) == []  # a key twice in a table literal
    for preset in _presets(name):  # no field beyond the table, none missing from it
        assert _flat(_config(name, preset)) == _flat(mod.FIELDS), preset
    # the config file adds no defaults of its own: it is the table's, but for the schedule
    # cyclegan's presets derive (DECAY_START)
    config, table = _config(name), validate.make_config(mod.FIELDS)
    if name == "editing":
        assert config == editing.default_config() == table

    def get(node, dotted):
        for part in dotted.split("."):
            node = node[part]
        return node

    changed = {k for k in _flat(config) - {"decay_start"} if get(config, k) != get(table, k)}
    assert changed == set(), changed


def test_a_field_declared_twice_or_without_a_meaning_is_refused(tmp_path):
    from imsyn import validate
    from imsyn.training import loop

    assert _dict_literal_duplicates(Path(loop.__file__)) == []  # COMMON_FIELDS
    probe = tmp_path / "fields.py"  # a table literal that declares a field twice
    probe.write_text('FIELDS = {"lr": 1, "seed": 0, "lr": 2}\n')
    assert _dict_literal_duplicates(probe) == ["fields.py:1: lr"]
    lr = validate.Decl(0.1, validate.number(min=0), "a learning rate")
    with pytest.raises(ValueError, match=r"declared twice .*\['lr'\]"):
        loop.training_fields({"lr": lr}, defaults={})
    with pytest.raises(ValueError, match="not common: \\['momentum'\\]"):
        loop.training_fields({}, defaults={"momentum": 0.9})
    with pytest.raises(ValueError, match="common field task needs the task's default"):
        loop.training_fields({}, defaults={})
    for meaning in ("", "  ", "two\nlines", "x" * (validate.MAX_MEANING + 1)):
        with pytest.raises(ValueError, match="field a.lr"):
            validate.check_table({"a": {"lr": lr._replace(meaning=meaning)}})
    with pytest.raises(ValueError, match="field lr is not declared as Decl"):
        validate.check_table({"lr": validate.number(min=0)})
