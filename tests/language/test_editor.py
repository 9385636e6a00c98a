"""The editor agrees with `xrun validate`: the schema as yaml-language-server, Ajv and jsonschema read it.

The slow tests run the real yaml-language-server (and Ajv) from npm, installed once into a cache folder; they are
skipped, with the reason, only where npm is missing or cannot install them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from helpers import REPO

from runner.errors import XrunError
from runner.language import schema
from runner.language.extends import load_with_bases
from runner.language.source import parse
from runner.language.spec import load_spec

EXPERIMENTS = sorted((REPO / "experiments").rglob("*.yaml"))
SCHEMA_FILE = REPO / "schema" / "experiment.schema.json"
NPM_PACKAGES = {"yaml-language-server": "1.25.0", "ajv": "8.20.0"}
HOVER_SAMPLE = ["filters", "epochs", "rate", "patience", "label_smoothing"]


# --- fast: the schema itself --------------------------------------------------------------------------------------

def _properties(node, path=()):
    """(path, name, schema) of every property the schema defines; `if` conditions and the completeness
    constraints of `$defs/complete` only repeat names, and define nothing."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict) and "if" not in path \
                    and path[:2] != ("$defs", "complete"):
                yield from ((path, name, prop) for name, prop in value.items() if isinstance(prop, dict))
            yield from _properties(value, path + (key,))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _properties(item, path + (i,))


def _description(prop: dict):
    """The property's own description, or that of the property its bare `$ref` stands for (a base's sections)."""
    if "description" in prop:
        return prop["description"]
    ref = prop.get("$ref", "")
    return schema.definition(ref).get("description") if ref.startswith("#/properties/") else None


def test_every_property_has_a_description():
    properties = list(_properties(schema.schema()))
    missing = ["/".join(map(str, path)) + "/" + name for path, name, prop in properties if not _description(prop)]
    assert len(properties) > 300
    assert missing == []


def test_the_schema_is_a_valid_draft_2020_12_schema():
    document = schema.schema()
    assert jsonschema.validators.validator_for(document) is jsonschema.Draft202012Validator
    jsonschema.Draft202012Validator.check_schema(document)
    jsonschema.Draft202012Validator.check_schema(schema.definition("#/$defs/base"))


def _x_keywords(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("x-"):
                found.append((key, value))
            _x_keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _x_keywords(item, found)
    return found


def test_every_x_keyword_is_declared_and_used_as_declared():
    declared = schema.definition("#/$defs/annotations")
    used = _x_keywords({k: v for k, v in schema.schema().items() if k != "$defs"}, [])
    used += _x_keywords({k: v for k, v in schema.schema()["$defs"].items() if k != "annotations"}, [])
    assert {"x-merge", "x-window", "x-refused"} <= {key for key, _ in used}
    assert {key for key, _ in used} == set(declared["properties"])
    checker = jsonschema.Draft202012Validator(declared)
    for key, value in used:
        assert checker.is_valid({key: value}), (key, value)


def test_a_file_with_extends_is_partial_and_a_file_without_is_whole():
    check = jsonschema.Draft202012Validator(schema.schema())
    partial = {"extends": "base.yaml", "name": "t", "data": {"limit": 10}, "training": {"batch_size": 8},
               "optimizer": {"learning_rate": 0.01}, "loss": {"label_smoothing": 0.1}}
    assert list(check.iter_errors(partial)) == []
    whole = {key: value for key, value in partial.items() if key != "extends"}
    assert sorted((".".join(e.absolute_path), e.message) for e in check.iter_errors(whole)) == [
        ("", "'model' is a required property"), ("data", "'dataset' is a required property"),
        ("loss", "'type' is a required property"), ("optimizer", "'type' is a required property"),
        ("training", "'epochs' is a required property")]
    nested = {"extends": "base.yaml", "optimizer": {"learning_rate": {"type": "CosineDecay", "warmup_epochs": 2}},
              "model": {"blocks": {"b": {"params": {"f": 8}}}}}  # a schedule and a block merge deeply too
    assert list(check.iter_errors(nested)) == []
    alone = {key: value for key, value in nested.items() if key != "extends"}
    assert sorted((".".join(e.absolute_path), e.message) for e in check.iter_errors(alone) if e.absolute_path) == [
        ("model", "'layers' is a required property"),
        ("model.blocks.b", "'layers' is a required property"),
        ("optimizer", "'type' is a required property"),
        ("optimizer.learning_rate", "'initial_learning_rate' is a required property"),
        ("optimizer.learning_rate", "'warmup_target' is a dependency of 'warmup_epochs'")]
    wrong = partial | {"training": {"epochs": 0}, "modle": {}}
    assert sorted(e.message for e in check.iter_errors(wrong)) == [
        "0 is less than the minimum of 1", "Additional properties are not allowed ('modle' was unexpected)"]


def test_xrun_checks_the_merged_file_as_a_whole(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("optimizer: {type: Adam}\nloss: CategoricalCrossentropy\ntraining: {epochs: 1}\n"
                    "model:\n  layers:\n    - {type: Dense, units: 10}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nname: child\ntraining: {batch_size: 8}\n")
    with pytest.raises(XrunError) as error:
        load_spec(child)
    assert error.value.format() == f"{child}:1:1: (top level): missing required key 'data'; add 'data:' here"
    child.write_text("extends: base.yaml\nname: child\ndata:\n  limit: 10\n")
    with pytest.raises(XrunError) as error:
        load_spec(child)
    assert error.value.format() == f"{child}:4:3: data: missing required key 'dataset'; add 'dataset:' here"
    base.write_text(base.read_text() + "data: {dataset: mnist}\n")
    data = load_spec(child).document["data"]
    assert (data["dataset"], data["limit"]) == ("mnist", 10)


def test_bases_point_their_editor_at_the_base_schema():
    base = schema.definition("#/$defs/base")
    sections = {key: {"$ref": f"#/properties/{key}"} for key in schema.schema()["properties"]}
    assert base["properties"] == sections, "a base may hold any section: list each in $defs/base as a $ref"
    for path in EXPERIMENTS:
        line = path.read_text().splitlines()[0]
        relative = os.path.relpath(SCHEMA_FILE, path.parent)
        fragment = "#/$defs/base" if path.parent != REPO / "experiments" else ""
        assert line == f"# yaml-language-server: $schema={relative}{fragment}", path
        if fragment:
            document, _ = parse(path.read_text(), str(path))
            root = schema.schema()
            as_base = {"$defs": root["$defs"], "properties": root["properties"], "$ref": "#/$defs/base"}
            assert list(jsonschema.Draft202012Validator(as_base).iter_errors(document)) == [], path


# --- slow: the real tools, from npm -------------------------------------------------------------------------------

def _npm_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xrun-tests" / "npm"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """yaml-language-server and Ajv at pinned versions, installed once into the cache (skip if npm cannot)."""
    if not (shutil.which("npm") and shutil.which("node")):
        pytest.skip("npm and node are not installed: the editor tests run yaml-language-server and Ajv from npm")
    tag = "-".join(f"{name}@{version}" for name, version in NPM_PACKAGES.items())
    target = _npm_cache() / tag
    if not (target / "node_modules" / "yaml-language-server" / "package.json").is_file():
        _npm_install(target)
    return target / "node_modules"


def _npm_install(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".install-"))
    try:
        specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
        # Few retries: where the registry cannot be reached, skip within a minute rather than five.
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline", "--fetch-retries=1",
                               "--fetch-retry-maxtimeout=10000", "--prefix", str(scratch), *specs],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            said = [line for line in done.stderr.splitlines() if "npm error" in line and "log of this run" not in line]
            pytest.skip(f"npm could not install {' '.join(specs)}: {' '.join(said[:2]) or done.stderr[-200:]}")
        try:
            scratch.rename(target)  # atomic: where another session got there first, its copy serves
        except OSError:
            pass
    except subprocess.TimeoutExpired:
        pytest.skip("npm install took over 300 s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class LanguageServer:
    """A minimal LSP client over stdio: requests with timeouts, diagnostics collected as they are published."""

    SETTINGS = {"yaml": {"validate": True, "hover": True, "completion": True, "schemaStore": {"enable": False},
                         "schemas": {}}}

    def __init__(self, node_modules: Path, log: Path):
        server = node_modules / "yaml-language-server" / "bin" / "yaml-language-server"
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(["node", str(server), "--stdio"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr)
        self.inbox: queue.Queue = queue.Queue()
        self.diagnostics: dict[str, list] = {}
        self.last_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def start(self) -> None:
        self.request("initialize", {"processId": os.getpid(), "rootUri": REPO.as_uri(), "capabilities": {
            "textDocument": {"hover": {"contentFormat": ["markdown"]}, "publishDiagnostics": {}},
            "workspace": {"configuration": True}}})
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": self.SETTINGS})

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            headers = {}
            while (line := stream.readline().strip()):
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            if not headers:
                self.inbox.put(None)  # the server has gone
                return
            self.inbox.put(json.loads(stream.read(int(headers["content-length"]))))

    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self._send({"method": method, "params": params})

    def request(self, method: str, params: dict, timeout: float = 60):
        self.last_id += 1
        self._send({"id": self.last_id, "method": method, "params": params})
        wanted = self.last_id
        for message in self._messages(timeout):
            if message.get("id") == wanted and "method" not in message:
                return message.get("result")
        raise TimeoutError(f"no answer to {method} in {timeout} s")

    def _messages(self, timeout: float):
        """Messages from the server until `timeout`; its requests are answered, its diagnostics kept."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                message = self.inbox.get(timeout=left)
            except queue.Empty:
                return
            if message is None:
                raise RuntimeError(f"yaml-language-server exited: {self.log.read_text()[-2000:]}")
            if "method" in message and "id" in message:
                items = message.get("params", {}).get("items", [])
                answer = [self.SETTINGS["yaml"]] * len(items) if message["method"] == "workspace/configuration" \
                    else None
                self._send({"id": message["id"], "result": answer})
            elif message.get("method") == "textDocument/publishDiagnostics":
                self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
            yield message

    def open(self, path: Path) -> None:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": path.as_uri(), "languageId": "yaml",
                                                              "version": 1, "text": path.read_text()}})

    def problems(self, paths: list[Path], timeout: float = 60) -> dict[str, list[str]]:
        """'line: message' of each diagnostic, per file, once every file has been checked and the server is quiet."""
        uris = {path.as_uri(): path for path in paths}
        for _ in self._messages(timeout):
            if set(uris) <= set(self.diagnostics):
                break
        for _ in self._messages(1.0):  # a later publication (the schema loaded late, say) replaces an earlier one
            pass
        missing = set(uris) - set(self.diagnostics)
        assert not missing, f"no diagnostics for {sorted(missing)} in {timeout} s"
        return {str(path): [f"{d['range']['start']['line'] + 1}: {d['message']}" for d in self.diagnostics[uri]]
                for uri, path in uris.items()}

    def hover(self, path: Path, line: int, col: int) -> str:
        """The hover text at 1-based (line, col), markdown escapes undone."""
        result = self.request("textDocument/hover", {"textDocument": {"uri": path.as_uri()},
                                                     "position": {"line": line - 1, "character": col - 1}})
        return re.sub(r"\\(.)", r"\1", (result or {}).get("contents", {}).get("value", ""))

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=5)
            self.notify("exit", {})
            self.process.wait(timeout=5)
        except (TimeoutError, RuntimeError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def editor(node_modules, tmp_path_factory):
    server = LanguageServer(node_modules, tmp_path_factory.mktemp("yaml-language-server") / "stderr.txt")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.slow
def test_the_editor_finds_no_problem_in_any_experiment(editor):
    assert len(EXPERIMENTS) >= 19
    for path in EXPERIMENTS:
        editor.open(path)
    problems = editor.problems(EXPERIMENTS)
    assert problems == {str(path): [] for path in EXPERIMENTS}


@pytest.mark.slow
def test_the_editor_still_finds_real_problems(editor, tmp_path):
    line = f"# yaml-language-server: $schema={SCHEMA_FILE}"
    whole = tmp_path / "whole.yaml"
    whole.write_text(f"{line}\nname: t\nmodel:\n  layers:\n    - {{type: Dense, units: 10}}\n"
                     "optimizer: {type: Adam}\nloss: CategoricalCrossentropy\ntraining: {epochs: 1}\n")
    partial = tmp_path / "partial.yaml"
    partial.write_text(f"{line}\nextends: {REPO / 'experiments' / 'model1.yaml'}\nname: t\nmodle: {{}}\n"
                       "training: {epochs: 0}\nmodel:\n  layers:\n    - {type: Dropout, rate: 1.5}\n")
    base = tmp_path / "base.yaml"
    base.write_text(f"{line}#/$defs/base\ntraining:\n  epoch: 3\n")
    for path in (whole, partial, base):
        editor.open(path)
    assert editor.problems([whole, partial, base]) == {
        str(whole): ['2: Missing property "data".'],
        str(partial): ["8: Value is above the exclusive maximum of 1.", "5: Value is below the minimum of 1.",
                       "4: Property modle is not allowed."],
        str(base): ["3: Property epoch is not allowed."]}


def _first_use(key: str) -> tuple[Path, tuple, object]:
    """The first experiment file that writes `key`, the key's path there and its location.

    Not inside `model.blocks`: a block's layers hold `${param}`s, so the schema leaves them free until expanded.
    """
    for path in EXPERIMENTS:
        _, locs = parse(path.read_text(), str(path))
        for where, loc in locs.keys.items():
            if where and where[-1] == key and "blocks" not in where:
                return path, where, loc
    raise AssertionError(f"no experiment writes '{key}'")


@pytest.mark.slow
@pytest.mark.parametrize("key", HOVER_SAMPLE)
def test_hover_shows_the_description_xrun_defines(editor, key):
    path, where, loc = _first_use(key)
    editor.open(path)
    document = load_with_bases(path)[0]
    description = schema.property_schema(where, document)["description"]
    assert len(description) > 20
    assert description in editor.hover(path, loc.line, loc.col + 1), (path, where)


@pytest.mark.slow
def test_ajv_compiles_the_schema_with_its_keywords_declared_and_accepts_every_experiment(node_modules, tmp_path):
    merged = {str(path.relative_to(REPO)): load_with_bases(path)[0]
              for path in EXPERIMENTS if path.parent == REPO / "experiments"}
    script = tmp_path / "ajv.js"
    script.write_text(AJV_SCRIPT)
    done = subprocess.run(["node", str(script), str(SCHEMA_FILE)], input=json.dumps(merged), capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NODE_PATH": str(node_modules)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert re.fullmatch(r'strict mode: unknown keyword: "x-[a-z-]+"', report["undeclared"])
    assert report["valid"] == {name: True for name in merged}


# Ajv's default options are strict: unknown keywords stop compilation until declared, as the schema says how.
AJV_SCRIPT = """
const fs = require("fs");
const Ajv2020 = require("ajv/dist/2020").default;
const schema = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const quiet = {log() {}, warn() {}, error: console.error};
let undeclared = null;
try { new Ajv2020({logger: quiet}).compile(schema); } catch (e) { undeclared = e.message; }
const keywords = Object.keys(schema.$defs.annotations.properties);
const validate = new Ajv2020({keywords, logger: quiet}).compile(schema);
const valid = {};
for (const [name, doc] of Object.entries(JSON.parse(fs.readFileSync(0, "utf8")))) {
  valid[name] = validate(doc) || validate.errors;
}
console.log(JSON.stringify({undeclared, valid}));
"""
