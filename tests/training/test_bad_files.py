"""Unreadable image files: every one named (up to a limit, then a count), and a skipping run keeps the list
(issue 22, item 21)."""

from __future__ import annotations

import pytest
import yaml
from helpers import artifact_text, experiment, store_uri, train
from test_sources import error_of, folder_data, images, load, write


def spoil(folder, count: int) -> list:
    """`count` class-b images overwritten with bytes no image library reads, in the order they are scanned."""
    bad = sorted((folder / "b").glob("*.png"))[:count]
    for path in bad:
        path.write_bytes(b"not an image")
    return bad


def unidentified(path) -> str:
    return f"{path} (cannot identify image file {str(path)!r})"


def test_every_unreadable_file_is_named_at_once(tmp_path):
    images(tmp_path / "pics", {"a": 3, "b": 3, "c": 3})
    bad = spoil(tmp_path / "pics", 2)
    path = write(tmp_path, folder_data())
    assert error_of(load, path) == (f"{path}:5:3: data.path: cannot read 2 images: {unidentified(bad[0])}, "
                                    f"{unidentified(bad[1])}; fix or remove the files, or set data.on_bad_file: skip")


def test_past_five_unreadable_files_the_rest_are_counted(tmp_path):
    images(tmp_path / "pics", {"a": 3, "b": 8, "c": 3})
    bad = spoil(tmp_path / "pics", 7)
    path = write(tmp_path, folder_data())
    named = ", ".join(unidentified(p) for p in bad[:5])
    assert error_of(load, path) == (f"{path}:5:3: data.path: cannot read 7 images: {named} and 2 more; "
                                    "fix or remove the files, or set data.on_bad_file: skip")


@pytest.mark.slow
def test_a_skipping_run_names_what_it_left_out_and_keeps_the_whole_list(tmp_path):
    from rich.console import Console

    images(tmp_path / "pics", {"a": 10, "b": 10, "c": 10})
    bad = spoil(tmp_path / "pics", 7)
    doc = experiment(data=folder_data(on_bad_file="skip"), training={"epochs": 1, "batch_size": 8, "seed": 3},
                     model={"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]})
    path = tmp_path / "skip.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    console = Console(record=True, width=2000)
    result = train(path, uri=store_uri(tmp_path), console=console)
    said = [line for line in console.export_text().splitlines() if line.startswith("xrun: left out")]
    assert said == [f"xrun: left out 7 unreadable image(s) (data.on_bad_file: skip): "
                    f"{', '.join(str(p) for p in bad[:5])} and 2 more; the list is the run's data/skipped_files.txt"]
    assert artifact_text(store_uri(tmp_path), result.run_id, "data/skipped_files.txt") == \
        "".join(f"{p}\n" for p in bad)
