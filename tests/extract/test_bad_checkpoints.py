"""Bad checkpoint files and folders get named errors, never a traceback (issue 15 items 8-9)."""

from __future__ import annotations

import pytest
import torch
from neurofeat.extract.adapters import AdapterError, read_state_dict
from neurofeat.extract.checkpoint import BackboneNotFoundError, resolve_backbone

pytestmark = pytest.mark.torch


def test_empty_checkpoint_file_is_named(tmp_path):
    empty = tmp_path / "weights.pt"
    empty.write_bytes(b"")
    with pytest.raises(AdapterError, match=r"weights.pt is empty \(0 bytes\)"):
        read_state_dict(empty)


def test_unreadable_checkpoint_is_named(tmp_path):
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"x")
    with pytest.raises(AdapterError, match="cannot be loaded safely"):
        read_state_dict(junk)


def test_models_folder_with_only_a_pickle_says_pickles_are_refused(tmp_path):
    folder = tmp_path / "models" / "foo"
    folder.mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, folder / "model.pt")
    with pytest.raises(BackboneNotFoundError,
                       match=r"holds model.pt but no model.safetensors: .*never unpickles.*--adapter"):
        resolve_backbone("foo", tmp_path / "models")


def test_permission_errors_are_user_errors(tmp_path, capsys):
    import typer

    from neurofeat.cli.common import user_errors

    target = tmp_path / "S" / "runs"
    with pytest.raises(typer.Exit):
        with user_errors():
            raise PermissionError(13, "Permission denied", str(target))
    message = capsys.readouterr().err
    assert f"permission denied writing {target}: make it writable" in message
