"""The one table of data sources names exactly the schema's sources, and every entry's loader resolves."""

import inspect

import pytest

from runner.language import schema
from runner.language.data_facts import DATA_SOURCES, DataFacts, data_facts
from runner.language.reference import resolve

SCHEMA_SOURCES = schema.schema()["properties"]["data"]["properties"]["source"]["enum"]


def test_the_table_has_exactly_the_schema_s_sources():
    assert sorted(DATA_SOURCES) == sorted(SCHEMA_SOURCES)
    assert sorted(DATA_SOURCES) == sorted(schema.definition("#/$defs/data_sources"))


@pytest.mark.parametrize("name", SCHEMA_SOURCES)
def test_each_entry_is_named_as_its_key_and_its_loader_resolves(name):
    entry = DATA_SOURCES[name]
    assert entry.name == name
    loader = resolve(entry.loader)  # imports TensorFlow: the loaders are training-layer code
    assert loader.__module__ == "runner.training.sources"
    assert list(inspect.signature(loader).parameters) == ["data", "locate", "data_dir", "seed"]


def test_image_file_sources_are_the_folder_and_the_csv_list():
    assert [name for name, entry in DATA_SOURCES.items() if entry.image_files] == ["image_folder", "csv"]


def test_facts_come_from_the_entry_of_the_document_s_source():
    facts = data_facts({"data": {"source": "builtin", "dataset": "fashion_mnist"}}, lambda *a, **k: None)
    assert (facts.shape, facts.what, facts.class_names[:2]) == ((28, 28, 1), "fashion_mnist images",
                                                                ("T-shirt/top", "Trouser"))
    missing = data_facts({"data": {"source": "arrays", "path": "no/such.npz", "class_names": ["a", "b"]}},
                         lambda *a, **k: None)
    assert missing == DataFacts(None, ("a", "b"), "the arrays in no/such.npz")


def test_a_reference_that_names_nothing_fails():
    with pytest.raises(AttributeError):
        resolve("runner.language.data_facts:no_such_loader")
    with pytest.raises(ModuleNotFoundError):
        resolve("runner.no_such_module:load")
