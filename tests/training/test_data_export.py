"""`xrun data export`: where the files go (issue 22, item 20)."""

from __future__ import annotations

import zipfile

from helpers import xrun


def test_an_npz_dest_is_the_file_itself_not_a_folder_holding_it(tmp_path):
    dest = tmp_path / "data" / "digits.npz"
    code, out, err = xrun("data", "export", "mnist", dest, "--format", "npz", "--limit", "3")
    assert (code, out.strip()) == (0, f"wrote 3 train, 3 test images to {dest}")
    assert dest.is_file()
    with zipfile.ZipFile(dest) as z:
        assert sorted(z.namelist()) == ["x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]


def test_an_existing_npz_dest_is_refused_not_overwritten(tmp_path):
    dest = tmp_path / "digits.npz"
    dest.write_text("mine")
    code, out, err = xrun("data", "export", "mnist", dest, "--format", "npz", "--limit", "3")
    assert (code, err.strip()) == (2, f"{dest}: {dest} already exists and is not empty; "
                                      "export into a new folder, or remove it first")
    assert dest.read_text() == "mine"
