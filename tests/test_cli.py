import json

import pytest

from conftest import make_index_video
from emovid import __version__
from emovid.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"emovid {__version__}"


def test_probe_human_and_json(index_video, capsys):
    assert main(["probe", index_video]) == 0
    out = capsys.readouterr().out
    assert "48 frames" in out and "25.000 fps" in out and "64x48" in out
    assert main(["probe", index_video, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["num_frames"] == 48 and data[0]["width"] == 64


def test_probe_bad_inputs_one_line_each_nonzero_exit(index_video, tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    code = main(["probe", str(tmp_path / "missing.mp4"), index_video, str(text)])
    cap = capsys.readouterr()
    assert code == 1
    lines = cap.err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in cap.err
    assert lines[0].startswith("emovid: error: ") and "missing.mp4: no such file" in lines[0]
    assert "notes.mp4: cannot be opened as a video" in lines[1]
    assert "48 frames" in cap.out  # the good file in the middle is still reported


def test_probe_json_records_failures(tmp_path, capsys):
    code = main(["probe", "--json", str(tmp_path / "x.mp4")])
    assert code == 1
    assert json.loads(capsys.readouterr().out)[0]["error"].startswith("no such file")


def test_debug_shows_traceback_for_library_errors(tmp_path, capsys, monkeypatch):
    import emovid.demo

    def boom(out):
        from emovid.errors import EmovidError

        raise EmovidError("disk says no", out)

    monkeypatch.setattr(emovid.demo, "run_demo", boom)
    assert main(["demo", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"emovid: error: {tmp_path}: disk says no"
    assert main(["--debug", "demo", "-o", str(tmp_path)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_usage_error_exit_code(capsys):
    assert main(["probe"]) == 2
    assert "Missing argument" in capsys.readouterr().err


def test_demo_runs_offline(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["probe"]["num_frames"] == 120 and len(summary["sampled_frames"]) == 16
    assert (tmp_path / "contact_sheet.png").stat().st_size > 1000


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    import subprocess
    import sys

    video = make_index_video(tmp_path / "v.mp4", n=3)
    r = subprocess.run(
        [sys.executable, "-c", "from emovid.cli import main; main()", "probe", video, str(tmp_path / "none.mp4")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "none.mp4: no such file" in r.stderr


def test_threads_flag_and_wait_policy_are_set_before_torch_loads():
    # OpenMP reads its settings once, when torch loads it: main() must set them before any command imports torch.
    import os
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from emovid.cli import main\n"
        "assert 'torch' not in sys.modules\n"
        "main(sys.argv[1:])\n"
        "import torch\n"
        "print(torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))\n"
    )
    drop = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "EMOVID_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in drop}

    def run(*args, **extra):
        p = subprocess.run([sys.executable, "-c", code, *args], env={**env, **extra}, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout.split()[-3:]

    assert run("--version", "--threads", "1") == ["1", "None", "1000"]  # a brief spin, then sleep
    assert run("--version", EMOVID_THREADS="1", OMP_WAIT_POLICY="ACTIVE") == ["1", "ACTIVE", "None"]  # user's kept
    assert run("--version", GOMP_SPINCOUNT="50") == [run("--version")[0], "None", "50"]


def test_threads_configure_validates_and_works_late():
    import torch

    from emovid.errors import ConfigError
    from emovid.utils.threads import configure

    with pytest.raises(ConfigError, match="positive number of threads"):
        configure("0")
    n = torch.get_num_threads()
    try:
        got = configure(1)
        assert got["late"] and got["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)


def test_train_with_a_missing_label_file_fails_before_importing_lightning(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from emovid.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(rc, 'lightning' in sys.modules, 'torch' in sys.modules)\n"
    )
    args = ["train", "intensity", "--data", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "run")]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert p.stdout.split() == ["1", "False", "False"], p.stderr
    assert "missing.csv: no such label file or dataset folder" in p.stderr


def test_analyze_spares_a_core_for_its_decoding_thread(monkeypatch):
    import torch

    from emovid.utils import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("EMOVID_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    before = torch.get_num_threads()
    with threads.spare_core_for_decoding() as spare:
        assert spare.threads == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    monkeypatch.setenv("EMOVID_THREADS", "2")  # a count the user chose is kept
    with threads.spare_core_for_decoding() as spare:
        assert spare.threads is None and torch.get_num_threads() == before
    monkeypatch.delenv("EMOVID_THREADS")
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    with threads.spare_core_for_decoding() as spare:
        assert spare.threads is None
