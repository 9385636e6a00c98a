"""Using a trained model: the logged model stands alone, `xrun predict`, `xrun evaluate`, `xrun export`, serving."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from helpers import client, experiment, store_uri, train, write_experiment, xrun
from PIL import Image

from runner.model import standalone
from runner.trained.evaluate import scores
from runner.training.data import load_dataset

# TF 2.21's tf.lite.Interpreter warns it is deprecated (in favour of ai_edge_litert); Keras's ONNX export patches
# np.object for tf2onnx, which NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning",
                                        "ignore:.*np.object.*:FutureWarning")

YOGI_DOC = experiment(
    name="tiny_yogi", optimizer={"type": "Yogi", "learning_rate": 0.01},
    data={"dataset": "mnist", "limit": 256, "validation": "test"},
    training={"epochs": 1, "batch_size": 32, "seed": 1},
    tracking={"experiment": "use", "log_model": True, "log_images": False})


# --- per-class scores against a hand computation (no model) ---------------------------------------------

def test_per_class_precision_recall_f1_and_the_matrix_match_a_hand_computation():
    # true:      0 0 0 1 1 2 ; predicted: 0 0 1 1 2 2  (class 3 never occurs and is never predicted)
    labels = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.full((6, 4), 0.1)
    probabilities[np.arange(6), [0, 0, 1, 1, 2, 2]] = 0.7
    result = scores(labels, probabilities, ["a", "b", "c", "d"])
    assert result.matrix.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert result.accuracy == pytest.approx(4 / 6)
    # a: precision 2/2, recall 2/3, F1 2*(1*2/3)/(1+2/3) = 0.8; b: 1/2, 1/2, 1/2; c: 1/2, 1/1, 2/3; d: all 0
    expected = [("a", 1.0, 2 / 3, 0.8, 3), ("b", 0.5, 0.5, 0.5, 2), ("c", 0.5, 1.0, 2 / 3, 1), ("d", 0, 0, 0, 0)]
    assert [(c["class"], c["precision"], c["recall"], c["f1"], c["support"]) for c in result.per_class] == [
        (name, pytest.approx(p), pytest.approx(r), pytest.approx(f), s) for name, p, r, f, s in expected]
    assert result.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 4)
    # cross-entropy of the normalised probabilities: each row sums to 1.0, the true class has 0.7 or 0.1
    assert result.loss == pytest.approx(-(4 * np.log(0.7) + 2 * np.log(0.1)) / 6)


# --- one trained Yogi run, used by every test below -----------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("use")
    uri = store_uri(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(folder)  # exports land here
        result = train(write_experiment(folder, YOGI_DOC), uri=uri)
        mnist = load_dataset("mnist")
        # The trained model computing in float32, as the logged model does whatever precision `auto` chose here.
        yield SimpleNamespace(folder=folder, uri=uri, result=result, run_id=result.run_id,
                              reference=standalone.float32_copy(result.model),
                              x=mnist.x_test[:256], y=mnist.y_test[:256], x_train=mnist.x_train)


def probabilities(trained, pixels: np.ndarray) -> np.ndarray:
    """What the trained model says on these raw images, scaled as training scaled them."""
    return trained.reference.predict(pixels[..., None].astype("float32") / 255.0, verbose=0)


def logged_model(trained):
    c = client(trained.uri)
    experiment_id = c.get_run(trained.run_id).info.experiment_id
    [found] = c.search_logged_models([experiment_id], filter_string=f"source_run_id = '{trained.run_id}'")
    return found


@pytest.mark.slow
def test_the_logged_model_takes_uint8_images_says_so_and_carries_names_and_test_scores(trained):
    found = logged_model(trained)
    assert found.name == "tiny_yogi" and trained.result.model_uri == found.model_uri
    info = mlflow.models.get_model_info(found.model_uri)
    assert info.signature.inputs is None  # integers and floats reach the model as sent (tests/records/test_served.py)
    assert info.signature.outputs.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "float32",
                                                                                  "shape": (-1, 10)}}]
    assert info.metadata["class_names"] == list("0123456789") and info.metadata["dataset"] == "mnist"
    run = client(trained.uri).get_run(trained.run_id)
    assert {m.key: m.value for m in found.metrics} == {"test_loss": run.data.metrics["test_loss"],
                                                        "test_accuracy": run.data.metrics["test_accuracy"]}
    # linking the scores to the model did not log them twice in the run
    assert len(client(trained.uri).get_metric_history(trained.run_id, "test_accuracy")) == 1


CLEAN_PYFUNC = """
import sys
import mlflow
import numpy as np
model = mlflow.pyfunc.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
print(sorted(m for m in sys.modules if m == "runner" or m.startswith("runner.")))
"""


@pytest.mark.slow
def test_a_python_without_xrun_loads_the_yogi_model_through_pyfunc_and_predicts_raw_digits(trained, tmp_path):
    np.save(tmp_path / "x.npy", trained.x[:16])
    out = subprocess.run([sys.executable, "-c", CLEAN_PYFUNC, trained.result.model_uri, "x.npy", "p.npy"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MLFLOW_TRACKING_URI": trained.uri})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"  # xrun was never imported
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), probabilities(trained, trained.x[:16]), atol=1e-6)


# --- xrun predict ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(trained):
    """Four test digits as PNG files in a folder, and the same four in a .npy."""
    folder = trained.folder / "digits"
    folder.mkdir(exist_ok=True)
    for i, pixels in enumerate(trained.x[:4]):
        Image.fromarray(pixels).save(folder / f"{i}.png")
    np.save(trained.folder / "four.npy", trained.x[:4])
    return folder


def expected_rows(trained, names: list[str], k: int) -> list[list]:
    p = probabilities(trained, trained.x[:4])
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return [[name] + [v for c in best for v in (str(c), f"{p[i, c]:.4f}")] for i, (name, best) in
            enumerate(zip(names, order))]


@pytest.mark.slow
def test_predict_prints_a_table_of_the_top_classes_for_files_folders_and_arrays(trained, digits):
    code, out, err = xrun("predict", trained.run_id[:8], digits, trained.folder / "four.npy", "--tracking-uri",
                          trained.uri)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["file", "class_1", "p_1", "class_2", "p_2", "class_3", "p_3"]
    names = [f"{digits}/{i}.png" for i in range(4)] + [f"{trained.folder}/four.npy[{i}]" for i in range(4)]
    rows = expected_rows(trained, names[:4], 3)
    assert [line.split() for line in lines[1:]] == rows + [[n] + r[1:] for n, r in zip(names[4:], rows)]
    assert len({len(line) for line in lines}) == 1  # columns line up


@pytest.mark.slow
def test_predict_csv_and_json(trained, digits):
    code, out, _ = xrun("predict", trained.result.model_uri, digits / "0.png", "-k", "2", "--format", "csv")
    [row] = expected_rows(trained, [str(digits / "0.png")], 2)[:1]
    assert code == 0 and out.splitlines() == ["file,class_1,p_1,class_2,p_2", ",".join(row)]
    code, out, _ = xrun("predict", trained.run_id, digits / "0.png", "-k", "1", "--format", "json",
                        "--tracking-uri", trained.uri)
    p = probabilities(trained, trained.x[:1])[0]
    [answer] = json.loads(out)
    assert code == 0 and answer["file"] == str(digits / "0.png")
    assert answer["top"][0]["class"] == str(p.argmax())
    assert answer["top"][0]["probability"] == pytest.approx(float(p.max()), abs=1e-6)


@pytest.mark.slow
def test_predict_takes_a_keras_file(trained, digits, tmp_path):
    path = Path(mlflow.artifacts.download_artifacts(trained.result.model_uri, dst_path=str(tmp_path))) / "data" / \
        "model.keras"
    code, out, err = xrun("predict", path, digits / "1.png", "-k", "1", "--format", "csv")
    [row] = expected_rows(trained, [str(digits / "1.png")] * 2, 1)[1:]
    assert code == 0 and out.splitlines()[1] == ",".join(row), err


@pytest.mark.slow
def test_a_training_checkpoint_is_given_the_scaling_it_was_trained_with(trained, digits, tmp_path):
    # a compiled model that takes floats in [0, 1], as checkpoints/last.keras of an interrupted run is
    checkpoint = tmp_path / "last.keras"
    trained.result.model.save(checkpoint)
    code, out, err = xrun("predict", checkpoint, digits / "1.png", "-k", "1", "--format", "csv")
    [row] = expected_rows(trained, [str(digits / "1.png")] * 2, 1)[1:]
    assert code == 0 and out.splitlines()[1] == ",".join(row), err
    code, out, err = xrun("evaluate", checkpoint, "--data", "mnist", "--limit", 50, "--format", "json")
    expected = scores(trained.y[:50].astype(np.int64), probabilities(trained, trained.x[:50]), list("0123456789"))
    assert code == 0 and json.loads(out)["accuracy"] == expected.accuracy
    assert err.strip() == f"not recorded in MLflow: {checkpoint} has no training run"


def bad(*args) -> str:
    code, out, err = xrun("predict", *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    return err.strip()


@pytest.mark.slow
def test_a_bad_model_or_input_gets_one_line_and_exit_2(trained, digits):
    uri = ["--tracking-uri", trained.uri]
    assert bad("0123abcd", digits, *uri) == ("no MLflow run with id '0123abcd'; xrun compare --latest 10 lists "
                                             "recent runs")
    c = client(trained.uri)
    gone = c.create_run(c.get_run(trained.run_id).info.experiment_id, run_name="gone").info.run_id
    c.delete_run(gone)
    assert bad(gone[:8], digits, *uri) == (f"run {gone[:8]} (gone) is deleted; restore it (mlflow runs restore "
                                           f"--run-id {gone}) or give another run")
    pdf = trained.folder / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    assert bad(trained.run_id, pdf, *uri) == (
        f"{pdf}: not an image xrun can read (cannot identify image file '{pdf}'); give PNG or JPEG files, a folder "
        "of them, or a .npy of uint8 images")
    big = trained.folder / "big.png"
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(big)
    assert bad(trained.run_id, big, *uri) == (f"{big}: the image is 30x32 pixels; the model takes 28x28; resize or "
                                             "crop it to 28x28 first")
    scaled = trained.folder / "scaled.npy"
    np.save(scaled, trained.x[:2] / 255.0)
    assert bad(trained.run_id, scaled, *uri) == (f"{scaled}: the array holds float64; the model takes uint8 pixels "
                                                 "0-255; save the raw images (numpy.uint8), not scaled floats: the "
                                                 "model scales them itself")
    missing = trained.folder / "nothing.png"
    assert bad(trained.run_id, missing, *uri) == f"{missing}: no such file or folder"
    assert bad(pdf.with_suffix(".keras"), digits).startswith(f"{pdf.with_suffix('.keras')}: no such file")
    assert bad("models:/m-0000", digits, *uri).startswith("no logged model at models:/m-0000 (")


# --- xrun evaluate ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_evaluate_on_the_runs_test_split_reproduces_its_test_scores_and_records_a_nested_run(trained):
    code, out, err = xrun("evaluate", trained.run_id[:8], "--format", "json", "--tracking-uri", trained.uri)
    assert code == 0, err
    report = json.loads(out)
    run = client(trained.uri).get_run(trained.run_id)
    assert report["data"] == "the run's mnist test split, first 256" and report["images"] == 256
    assert report["accuracy"] == run.data.metrics["test_accuracy"]
    assert report["loss"] == pytest.approx(run.data.metrics["test_loss"], abs=1e-5)  # CategoricalCrossentropy
    expected = scores(trained.y.astype(np.int64), probabilities(trained, trained.x), list("0123456789"))
    assert report["confusion_matrix"] == expected.matrix.tolist()
    assert report["per_class"] == [{**c, "precision": pytest.approx(c["precision"]),
                                    "recall": pytest.approx(c["recall"]), "f1": pytest.approx(c["f1"])}
                                   for c in expected.per_class]
    evaluation_id = err.split("recorded as MLflow run ")[1].split(",")[0]
    evaluation = client(trained.uri).get_run(evaluation_id)
    assert evaluation.data.tags["mlflow.parentRunId"] == trained.run_id
    assert evaluation.data.tags["xrun.evaluation_of"] == trained.run_id and evaluation.info.status == "FINISHED"
    assert evaluation.data.metrics["accuracy"] == report["accuracy"]
    assert evaluation.data.metrics["recall.7"] == pytest.approx(expected.per_class[7]["recall"])
    files = {f.path for f in client(trained.uri).list_artifacts(evaluation_id, "evaluation")}
    assert files == {"evaluation/confusion_matrix.png", "evaluation/confusion_matrix.csv", "evaluation/per_class.csv"}
    linked = [m for m in logged_model(trained).metrics if m.dataset_name == report["data"]]
    assert {m.key: m.value for m in linked}["accuracy"] == report["accuracy"]


@pytest.mark.slow
def test_evaluate_on_a_folder_of_class_folders_prints_the_table(trained):
    folder = trained.folder / "labelled"
    for i, (pixels, label) in enumerate(zip(trained.x[:6], trained.y[:6])):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / str(label) / f"{i}.png")
    code, out, err = xrun("evaluate", trained.run_id, "--data", folder, "--no-log", "--tracking-uri", trained.uri)
    assert code == 0, err
    order = np.argsort([f"{y}/{i}.png" for i, y in enumerate(trained.y[:6])], kind="stable")  # read in path order
    expected = scores(trained.y[:6][order].astype(np.int64), probabilities(trained, trained.x[:6][order]),
                      list("0123456789"))
    lines = out.splitlines()
    assert lines[0] == (f"tiny_yogi (run {trained.run_id[:8]}) on {folder} (6 images): loss {expected.loss:.4f}, "
                        f"accuracy {expected.accuracy:.4f}, macro F1 {expected.macro_f1:.4f}")
    assert lines[2] == "class  precision  recall      f1  support"
    c = expected.per_class[int(trained.y[0])]
    assert lines[3 + int(trained.y[0])] == (f"{c['class']:<5}  {c['precision']:9.4f}  {c['recall']:6.4f}  "
                                            f"{c['f1']:6.4f}  {c['support']:7d}")
    assert "recorded" not in err
    code, _, err = xrun("evaluate", trained.run_id, "--data", trained.folder / "digits", "--tracking-uri", trained.uri)
    assert code == 2 and err.strip() == (f"{trained.folder / 'digits'}: no class sub-folders with PNG or JPEG "
                                         "images; put each class's images in a sub-folder named after it, e.g. 7/a.png")
    (folder / "seven").mkdir()
    code, _, err = xrun("evaluate", trained.run_id, "--data", folder, "--tracking-uri", trained.uri)
    assert code == 2 and err.strip() == (f"{folder / 'seven'}: 'seven' is not one of the model's classes; name each "
                                         "sub-folder after a class: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9")


# --- xrun export -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fmt, quantize, tolerance", [("savedmodel", None, 1e-4), ("tflite", None, 1e-4),
                                                       ("tflite", "float16", 2e-2), ("tflite", "int8", None),
                                                       ("onnx", None, 1e-4)])
def test_each_export_is_checked_against_keras_and_runs_by_itself(trained, fmt, quantize, tolerance):
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    output = trained.folder / f"out-{fmt}-{quantize}{'.' + fmt if fmt != 'savedmodel' else ''}"
    quantized = ["--quantize", quantize] if quantize else []
    code, out, err = xrun("export", trained.run_id[:8], "--format", fmt, *quantized,
                          "--output", output, "--check-images", 100, "--max-drop", 0.05, "--tracking-uri", trained.uri)
    assert code == 0, err
    described = json.loads(Path(f"{output}.json").read_text())
    check = described["check"]
    assert described["class_names"] == list("0123456789") and check["images"] == 100
    print(f"{fmt} {quantize}: max difference {check['max_difference']:.2e}, accuracy {check['keras_accuracy']} -> "
          f"{check['exported_accuracy']}")
    assert f"max |difference| from Keras {check['max_difference']:.2e}" in out
    # run the file again here, independently of the check, on other test images
    got = _run_exported(fmt, output, trained.x[100:132])
    difference = np.abs(got - probabilities(trained, trained.x[100:132])).max()
    assert difference <= (tolerance if tolerance is not None else 0.05)
    assert np.mean(got.argmax(1) == probabilities(trained, trained.x[100:132]).argmax(1)) >= (1.0 if tolerance else 0.9)


def _run_exported(fmt: str, path: Path, pixels: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(path))  # kept: its variables go with it
        return loaded.serve(tf.constant(pixels)).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: pixels})[0]
    interpreter = tf.lite.Interpreter(model_path=str(path))
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], pixels.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], pixels)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.slow
def test_export_never_replaces_a_file_without_force_and_quantizes_only_tflite(trained):
    output = trained.folder / "taken.tflite"
    output.write_text("mine")
    code, _, err = xrun("export", trained.run_id, "--format", "tflite", "-o", output, "--tracking-uri", trained.uri)
    assert code == 2 and err.strip() == f"{output}: already exists; give another --output, or --force to replace it"
    assert output.read_text() == "mine"
    code, _, err = xrun("export", trained.run_id, "--format", "onnx", "--quantize", "int8", "--tracking-uri",
                        trained.uri)
    assert code == 2 and err.strip() == "--quantize int8 applies to --format tflite only; drop --quantize"


# --- serving ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_raw_uint8_digits_with_the_right_classes(trained):
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    # MLflow starts uvicorn by name: the environment's bin goes first on PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained.uri,
           "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ['PATH']}"}
    log = trained.folder / "serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", trained.result.model_uri,
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=log_file, env=env)
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", server, log)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": trained.x[:8].tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            served = np.array(json.load(answer)["predictions"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected = probabilities(trained, trained.x[:8])
    assert served.argmax(1).tolist() == expected.argmax(1).tolist()
    np.testing.assert_allclose(served, expected, atol=1e-6)


def _wait_for(url: str, server: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"mlflow models serve did not answer {url} in {seconds}s")
