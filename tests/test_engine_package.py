"""The engine package: importable, subclassable Lightning pieces; one copy of each helper; the hooks a task declares."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import emovid

SRC = Path(emovid.__file__).parent


def _python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


# ---- the package ---------------------------------------------------------------------------------------------


def test_importing_the_engine_imports_neither_torch_nor_lightning():
    out = _python(
        "import sys, emovid.engine\n"
        "print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))\n"
        "from emovid.engine import Input, Job, run\n"
        "print(run.__module__, Job.__module__, Input.__module__)\n"
    )
    first, second = out.strip().splitlines()
    assert first == "[]"
    assert second == "emovid.engine.batch emovid.engine.batch emovid.engine.batch"


def test_help_of_the_cli_loads_no_engine():
    out = _python(
        "import sys\n"
        "from emovid.cli import main\n"
        "for argv in (['--help'], ['analyze', '--help'], ['train', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('RESULT', sorted(m for m in ('lightning', 'transformers', 'emovid.engine') if m in sys.modules))\n"
    )
    assert out.strip().splitlines()[-1] == "RESULT []"


def test_a_trained_models_folder_loads_without_lightning_or_the_other_tasks(tmp_path):
    # Applying one trained model (search, eval, t-SNE) imports its own task only: no Lightning, no torchmetrics.
    out = _python(
        "import sys\n"
        "from emovid.config import TrainConfig\n"
        "from emovid.engine.model_dir import build_task_model, load_model_dir, save_model_dir\n"
        "from emovid.tasks import get_task\n"
        f"cfg = TrainConfig(task='retrieval', model='test_clip_vip', output_dir={str(tmp_path)!r})\n"
        "save_model_dir(build_task_model(cfg, get_task('retrieval')(cfg), pretrained=False), cfg, cfg.output_dir)\n"
        "model, cfg2, task = load_model_dir(cfg.output_dir)\n"
        "heavy = ('lightning', 'torchmetrics', 'emovid.tasks.intensity')\n"
        "print(task.name, sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert out.strip().splitlines()[-1] == "retrieval []"


def test_unknown_task_names_every_task():
    from emovid.errors import ConfigError
    from emovid.tasks import get_task
    from emovid.tasks.base import BUILTIN_TASKS

    with pytest.raises(ConfigError, match="unknown task 'nope'; choose one of") as e:
        get_task("nope")
    assert all(name in str(e.value) for name in BUILTIN_TASKS)


def test_every_exported_name_resolves_to_its_module():
    import importlib

    import emovid.engine as engine

    assert sorted(engine.__all__) == sorted(engine._NAMES)
    for name, where in engine._NAMES.items():
        assert getattr(engine, name) is getattr(importlib.import_module(f"emovid.engine.{where}"), name), name
    with pytest.raises(AttributeError):
        engine.no_such_name  # noqa: B018


def test_the_batch_engine_is_what_the_commands_run_on():
    import emovid.analyze.batch
    import emovid.extract
    import emovid.predict_run
    from emovid.engine import batch

    assert emovid.extract.run_batch is batch.run
    assert emovid.extract.Job is batch.Job
    assert emovid.predict_run.Job is batch.Job and emovid.analyze.batch.Job is batch.Job
    assert not (SRC / "engine.py").exists()


# ---- one copy of each helper ---------------------------------------------------------------------------------


def test_training_and_pretraining_share_the_engine_helpers():
    import emovid.pretrain.clips
    import emovid.pretrain.engine
    import emovid.train
    import emovid.train.checkpoint
    import emovid.train.module
    from emovid.engine import callbacks, checkpoint, module

    assert emovid.train.module._EpochSetter is callbacks.EpochSetter
    assert emovid.pretrain.clips._EpochSetter is callbacks.EpochSetter
    assert emovid.pretrain.engine.EpochSetter is callbacks.EpochSetter
    assert emovid.train._resume_epoch is checkpoint.resume_epoch
    assert emovid.pretrain.clips._resume_epoch is checkpoint.resume_epoch
    assert emovid.pretrain.engine.resume_epoch is checkpoint.resume_epoch
    assert emovid.pretrain.engine.check_run_folder is checkpoint.check_run_folder
    assert emovid.train.checkpoint.check_run_folder is checkpoint.check_run_folder
    assert emovid.train.safe_checkpoint_io is checkpoint.safe_checkpoint_io
    assert emovid.train.TaskModule is module.TaskModule and emovid.train.TaskDataModule is module.TaskDataModule
    # ... and no second definition anywhere in training or pretraining
    for path in [*(SRC / "train").glob("*.py"), *(SRC / "pretrain").glob("*.py")]:
        text = path.read_text()
        for definition in ("class _EpochSetter", "def _resume_epoch", "def check_run_folder", "class TaskModule"):
            assert definition not in text, (path.name, definition)


def test_run_folder_guard_and_resume_epoch(tmp_path):
    import torch

    from emovid.engine.checkpoint import check_run_folder, resume_epoch
    from emovid.errors import ConfigError

    with pytest.raises(ConfigError, match="nothing to resume"):
        check_run_folder(tmp_path, resume=True)
    last = check_run_folder(tmp_path, resume=False)
    assert last == tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save({"epoch": 4}, last)
    assert resume_epoch(last) == 5  # no loop state: the saved epoch + 1
    torch.save({"epoch": 4, "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 3}}}}}, last)
    assert resume_epoch(last) == 3
    with pytest.raises(ConfigError, match="already holds a run"):
        check_run_folder(tmp_path, resume=False)


# ---- the task's hooks ------------------------------------------------------------------------------------------


def test_task_declares_its_optional_hooks():
    from emovid.config import TrainConfig
    from emovid.tasks.base import Task, get_task

    class Minimal(Task):
        name = "minimal"

        def compute_metrics(self, outputs):
            return {"n": float(len(outputs["index"]))}

    task = Minimal(TrainConfig(task="minimal"))
    assert task.test_records == [] and task.takes_clip_length is False
    assert task.test_metrics({"index": [0, 1, 2]}) == {"n": 3.0}  # default: the validation metrics
    assert task.derive({}) == {}
    for hook in ("make_backbone", "check_inputs", "bad_keys", "infer", "make_loaders"):
        assert callable(getattr(Task, hook)), hook
    with pytest.raises(NotImplementedError):
        task.make_backbone()
    assert get_task("valence_arousal").takes_clip_length is True
    assert get_task("v2v").test_metrics is not Task.test_metrics


def test_callers_do_not_probe_tasks_for_hooks():
    probe = re.compile(r"(getattr|hasattr)\((self\.)?task\b")
    found = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert not found, found


# ---- subclassing the Lightning pieces --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from emovid.data.synth import generate

    out = tmp_path_factory.mktemp("synth_engine")
    generate(out, num_videos=16, seed=11, size=64, fps=10, seconds=1.2, workers=0)
    return out


def test_subclassed_module_and_datamodule_train_through_the_engine(tiny, tmp_path):
    from emovid.config import TrainConfig
    from emovid.engine.module import TaskDataModule, TaskModule
    from emovid.train import make_module, train

    calls = {"steps": 0, "loaders": 0}

    class CountingModule(TaskModule):
        def training_step(self, batch, batch_idx):
            calls["steps"] += 1
            return super().training_step(batch, batch_idx)

    class CountingData(TaskDataModule):
        def train_dataloader(self):
            calls["loaders"] += 1
            return super().train_dataloader()

    cfg = TrainConfig(
        task="intensity",
        data=str(tiny / "intensity.csv"),
        output_dir=str(tmp_path / "run"),
        model="test_resnet18_3dstem",
        epochs=1,
        batch_size=4,
        num_workers=0,
        progress_bar=False,
        log_every_n_steps=1,
        score="norm",
    )
    one_step = {"limit_train_batches": 1}  # then the epoch ends, and validates, after one step
    summary = train(cfg, module_class=CountingModule, datamodule_class=CountingData, trainer_kwargs=one_step)
    assert calls == {"steps": 1, "loaders": 1}
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "run" / "model.safetensors").exists() and "val/pair_acc" in summary["best_metrics"]
    assert summary["task"] == "intensity"
    # the factories of emovid.train build the same module-level classes
    from emovid.tasks.base import get_task
    from emovid.train import build_task_model

    task = get_task("intensity")(cfg)
    module = make_module(task, build_task_model(cfg, task, pretrained=False), cfg, cached=False)
    assert type(module) is TaskModule and module.backbone_frozen is False
