"""Run names: a `--set` run is named by what it changed, as a sweep trial is (issue 22, item 24)."""

from runner.records.run_names import run_name


def test_a_plain_run_has_the_experiments_name():
    assert run_name("seed000_yogi", []) == "seed000_yogi"


def test_a_set_run_is_named_by_what_it_changed_briefly():
    assert run_name("seed000_yogi", ["training.batch_size=32", "optimizer.learning_rate=0.000123456",
                                     "model.layers[0].filters=32", "model.layers[2].filters=8"]) == \
        "seed000_yogi [batch_size=32 learning_rate=0.000123 layers[0].filters=32 layers[2].filters=8]"
    assert run_name("a", ["model.layers[1].activation=" + "x" * 30]) == "a [activation=" + "x" * 15 + "…]"


def test_where_and_how_a_run_is_recorded_and_what_it_is_called_are_left_out():
    assert run_name("a", ["tracking.experiment=elsewhere", "tracking.tags.note=x", "name=b", "description=c",
                          "data.data_dir=/d"]) == "a"
    assert run_name("a", ["tracking.log_model=false", "training.epochs=2"]) == "a [epochs=2]"
