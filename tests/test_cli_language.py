"""`xrun validate` and `xrun summary` from the outside: exit codes, one-line messages on stderr, no TensorFlow."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runner import cli

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
BASE = EXPERIMENTS / "base" / "seed004.yaml"


def run(argv: list[str]) -> int:
    """The exit code of `xrun ARGV`, run in this process."""
    try:
        return cli.main(argv)
    except SystemExit as exc:  # click's own exits, and commands that exit directly
        return exc.code


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_validate_imports_no_tensorflow():
    # The data of folder_digits, multilabel and the ImageNet ones is not in the repository, and validate says so.
    files = [str(p) for p in sorted(EXPERIMENTS.glob("*.yaml"))
             if p.stem not in ("folder_digits", "multilabel", "vgg16", "resnet50", "mobilenetv2")]
    result = python(f"""
        import sys, time
        start = time.perf_counter()
        from runner.cli import main
        try:
            code = main(['validate', *{files!r}, '--set', 'training.epochs=2'])
        except SystemExit as exc:
            code = exc.code
        elapsed = time.perf_counter() - start
        heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)
        print('RESULT', code, heavy, round(elapsed, 3))
    """)
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT"))
    print(f"xrun validate of {len(files)} files, in process: {line.split()[-1]} s")
    assert line.split()[1:3] == ["0", "[]"], result.stdout + result.stderr


def test_validate_errors_import_no_tensorflow(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {BASE}\nname: t\nmodel:\n  layers:\n    - {{type: Dens, units: 3}}\n")
    result = python(f"""
        import sys
        from runner.cli import main
        try:
            code = main(['validate', {str(bad)!r}])
        except SystemExit as exc:
            code = exc.code
        print('RESULT', code, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))
    """)
    assert "RESULT 2 []" in result.stdout, result.stdout + result.stderr


def test_validate_of_a_bad_file_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {BASE}\nname: t\nmodel:\n  layers:\n    - {{type: Dens, units: 3}}\n")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "runner.cli", "validate", str(bad)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    print(f"xrun validate, a whole process: {time.perf_counter() - start:.2f} s")
    assert result.returncode == 2
    assert result.stderr == f"{bad}:5:14: model.layers[0].type: unknown layer type 'Dens'; did you mean 'Dense'?\n"
    assert result.stdout == ""


@pytest.mark.parametrize("content", [
    "name: x\nmodel: {layers: [\n", "name: !!python/object/apply:os.system ['true']\n", "", "- a\n",
    "name: a\n---\nname: b\n", "a: &a [*a]\n", "a: " + "[" * 1000 + "]" * 1000 + "\n",
], ids=["syntax", "python tag", "empty", "list", "two documents", "recursive alias", "deep"])
def test_no_yaml_input_gives_a_traceback(tmp_path, capsys, content):
    path = tmp_path / "t.yaml"
    path.write_text(content)
    assert run(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:") and len(err.splitlines()) == 1 and "Traceback" not in err


def test_validate_reports_each_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    good = EXPERIMENTS / "model1.yaml"
    assert run(["validate", str(good), str(bad), str(tmp_path / "missing.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == f"ok  {good}\n"
    assert err.splitlines() == [
        f"{bad}:1:1: (top level): missing required key 'data'; add 'data:' here",
        f"{bad}:1:1: (top level): missing required key 'model'; add 'model:' here",
        f"{bad}:1:1: (top level): missing required key 'optimizer'; add 'optimizer:' here",
        f"{bad}:1:1: (top level): missing required key 'loss'; add 'loss:' here",
        f"{bad}:1:1: (top level): missing required key 'training'; add 'training:' here",
        f"{tmp_path / 'missing.yaml'}: no such file; check the path (it is relative to the current directory)",
    ]


def test_validate_with_a_bad_override(capsys):
    assert run(["validate", str(EXPERIMENTS / "model1.yaml"), "--set", "training.epoch=3"]) == 2
    assert capsys.readouterr().err == "--set training.epoch=3: unknown key 'training.epoch'; did you mean 'epochs'?\n"


def test_summary_of_a_shape_error_exits_2(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(f"extends: {BASE}\nname: t\nmodel:\n  layers:\n    - {{type: MaxPooling2D, pool_size: 7}}\n"
                    "    - {type: Conv2D, filters: 4, kernel_size: 5}\n    - {type: Flatten}\n"
                    "    - {type: Dense, units: 10, activation: softmax}\n")
    assert run(["summary", str(path)]) == 2
    out, err = capsys.readouterr()
    assert err == (f"{path}:6:14: model.layers[1]: Conv2D's 5x5 kernel does not fit its 4x4 input (None, 4, 4, 1); "
                   "use padding: same, a smaller kernel_size, or down-sample less before this layer\n")
    assert "Traceback" not in out + err


def test_summary_of_an_invalid_file_exits_2(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text("name: x\n---\n")
    assert run(["summary", str(path)]) == 2
    assert capsys.readouterr().err == (f"{path}:2:1: more than one YAML document in the file; "
                                       "an experiment is one document; remove the '---' separator\n")


def test_summary_json_of_a_small_model(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    # The hidden layer is changed: the output's 10 units must stay MNIST's 10 classes.
    path.write_text(f"extends: {BASE}\nname: tiny\nmodel:\n  layers:\n    - {{type: Flatten}}\n"
                    "    - {type: Dense, units: 10}\n    - {type: Dense, units: 10}\n")
    assert run(["summary", str(path), "--format", "json", "--set", "model.layers[1].units=5"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "tiny" and info["total_params"] == 784 * 5 + 5 + 5 * 10 + 10
    assert [(r["name"], r["type"], r["inputs"], r["output_shape"]) for r in info["layers"]] == [
        ("flatten", "Flatten", ["input"], [None, 784]), ("dense", "Dense", ["flatten"], [None, 5]),
        ("dense_1", "Dense", ["dense"], [None, 10])]


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"], ["summary", "--help"], ["-h"]])
def test_help_exits_0(argv, capsys):
    assert run(argv) == 0
    assert "Usage: xrun" in capsys.readouterr().out
