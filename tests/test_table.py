import pytest

from tune_spacenas.tables import MissingMetricError, NASBench201Table
from tune_spacenas.trainables.table import evaluate_on_table

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def table():
    return NASBench201Table.load()


def test_known_architectures(table):
    assert table.query(BEST_C10, "cifar10") == pytest.approx(94.37333, abs=1e-4)
    first_row = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    assert table.query(first_row, "cifar10") == pytest.approx(85.86333, abs=1e-4)
    assert table.query(first_row, "cifar100") == pytest.approx(52.91333, abs=1e-4)
    assert table.query(first_row, "ImageNet16-120") == pytest.approx(26.63333, abs=1e-4)
    assert table.best("cifar100")[1] == pytest.approx(73.51, abs=0.01)
    assert table.best("ImageNet16-120")[1] == pytest.approx(47.31, abs=0.01)
    assert table.query((0,) * 6) == pytest.approx(10.0, abs=0.01)  # an all-none cell cannot learn


def test_missing_metric_is_said_not_invented(table):
    with pytest.raises(MissingMetricError, match="12-epoch validation accuracy"):
        table.query(BEST_C10, metric="valid_accuracy_12")
    with pytest.raises(ValueError, match="unknown NAS-Bench-201 dataset"):
        table.query(BEST_C10, "mnist")


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="TUNE_SPACENAS_DATA"):
        NASBench201Table(tmp_path / "nope.csv")


def test_parquet_copy_loads_and_truncated_csv_is_rejected(tmp_path, table, nb201_csv):
    parquet = tmp_path / "nb201.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(table._parquet_path()), parquet)
    assert NASBench201Table(parquet).query(BEST_C10) == table.query(BEST_C10)
    assert NASBench201Table(nb201_csv).query(BEST_C10) == table.query(BEST_C10)
    truncated = tmp_path / "short.csv"
    truncated.write_text("".join(nb201_csv.read_text().splitlines(keepends=True)[:100]))
    with pytest.raises(ValueError, match="all 15625"):
        NASBench201Table(truncated)


def test_batch_evaluation_answers_per_architecture_like_the_supernet(table):
    """SPOS's evolution sends batches: the table answers them, so it stands in for the supernet."""
    from tune_spacenas.runner import run_in_process
    from tune_spacenas.searchers import EvolutionSettings, SPOSSearcher

    archs = [BEST_C10, table.space.to_string((0,) * 6)]
    result = evaluate_on_table({"task": "evaluate", "archs": archs, "dataset": "cifar10"})
    assert result["per_arch"]["accuracy"] == [table.query(a) for a in archs]
    assert result["accuracy"] == pytest.approx(sum(result["per_arch"]["accuracy"]) / 2)
    spos = SPOSSearcher(
        space=table.space,
        metric="accuracy",
        mode="max",
        train_steps=0,
        eval_batch=5,
        seed=0,
        evolution=EvolutionSettings(population=10, generations=3, parents=3, mutations=5, crossovers=5),
    )
    run_in_process(spos, evaluate_on_table)
    assert len(spos.history) >= 20  # every architecture of every batch, one record each
    assert table.query(spos.best_architecture()) == max(h["accuracy"] for h in spos.history)


def test_trainable_reports_reward_and_all_datasets():
    result = evaluate_on_table({"arch": BEST_C10, "dataset": "cifar100"})
    assert result["accuracy"] == result["cifar100_test_accuracy"]
    assert result["reward"] == "test_accuracy_200:cifar100"
    assert result["cifar10_test_accuracy"] == pytest.approx(94.373, abs=1e-3)
