"""Model zips: a good one imports and predicts; unsafe ones are refused before anything is extracted."""

import stat
import zipfile

import pytest

from finetuner import LLMFinetuner, ModelLoadError
from finetuner.archive import import_model_zip


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_bert):
    from conftest import TINY_CONFIG, make_sentiment_data
    model = LLMFinetuner(tiny_bert, config=TINY_CONFIG)
    texts, labels = make_sentiment_data(40)
    model.fine_tune(texts, labels)
    return model, model.save(tmp_path_factory.mktemp("saved") / "model")


def _zip_dir(directory, zip_path, prefix="model/"):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in directory.iterdir():
            archive.write(path, prefix + path.name)
    return zip_path


def test_an_exported_zip_imports_and_predicts_identically(saved_model, tmp_path):
    model, directory = saved_model
    imported = import_model_zip(_zip_dir(directory, tmp_path / "m.zip"), tmp_path / "imported")
    sentences = ["a great film", "an awful day"]
    assert LLMFinetuner.load(imported).predict_proba(sentences) == model.predict_proba(sentences)


def _zip_with(tmp_path, name, data=b"x", link=False):
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, data)
    return zip_path


@pytest.mark.parametrize("name, link, words", [
    ("../escape.txt", False, "outside the target folder"),
    ("model/../../escape.txt", False, "outside the target folder"),
    ("/etc/passwd", False, "outside the target folder"),
    ("model/link", True, "is a link"),
    ("model/pytorch_model.bin", False, "pickle"),
    ("model/model_head.pkl", False, "pickle"),
])
def test_unsafe_zips_are_refused_and_nothing_is_written(tmp_path, name, link, words):
    zip_path = _zip_with(tmp_path, name, link=link)
    with pytest.raises(ModelLoadError, match=words):
        import_model_zip(zip_path, tmp_path / "out" / "imported")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_zip_bombs_and_non_models_and_non_zips_are_refused(tmp_path):
    big = _zip_with(tmp_path, "model/big.txt", data=b"0" * 3 * 2**20)
    with pytest.raises(ModelLoadError, match="unpacks to 3 MB"):
        import_model_zip(big, tmp_path / "a", max_unpacked_mb=1)
    with pytest.raises(ModelLoadError, match="no finetuner model"):
        import_model_zip(_zip_with(tmp_path, "notes.txt"), tmp_path / "b")
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"not a zip at all")
    with pytest.raises(ModelLoadError, match="not a readable zip"):
        import_model_zip(not_zip, tmp_path / "c")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
