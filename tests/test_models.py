import pytest

from ragtune.errors import UserError
from ragtune.retrieval.models import model_fingerprint, resolve_model


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_bundled_names_resolve_offline(name):
    path = resolve_model(name)
    assert (path / "modules.json").is_file() and (path / "model.safetensors").is_file()


def test_local_directory_is_accepted():
    bundled = resolve_model("all-MiniLM-L6-v2")
    assert resolve_model(str(bundled)) == bundled


def test_unknown_name_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="not found.*all-MiniLM-L6-v2"):
        resolve_model("BAAI/bge-small-en-v1.5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a sentence-transformers directory"):
        resolve_model(str(tmp_path / "empty"))


def test_fingerprint_follows_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = model_fingerprint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00\x01")
    assert model_fingerprint(tmp_path) != before
