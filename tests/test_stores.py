"""Stores and caching: disk, diskcache and a real Redis server; cached results and resumed runs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time

import diskcache
import pandas as pd
import pytest
import redis
from conftest import free_port
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier

from pydags import StageStatus
from pydags.pipeline import Pipeline
from pydags.stage import DiskCacheStage, RedisStage, Stage, stage
from pydags.store import DiskCacheStore, DiskStore, MissingKey, RedisStore


@pytest.fixture(scope="module")
def redis_url():
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: .ci/run installs Debian's redis-server"
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.time() + 60
    while True:  # wait for the server to accept connections
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.time() < deadline, "redis-server did not start within 60 s"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


# --- the published library's README example, unchanged but for the server's port ----------
class DataIngestor(RedisStage):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    @property
    def name(self):
        return "DataIngestor"

    def run(self, *args, **kwargs):
        data = load_wine()
        df = pd.DataFrame(data.data, columns=data.feature_names)
        df["label"] = data.target
        self.write("data", df)


class DataPreprocessor(RedisStage):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    @property
    def name(self):
        return "DataPreprocessor"

    def run(self, *args, **kwargs):
        df = self.read("data")
        df = df.sample(frac=1.0, random_state=0)
        self.write("train_df", df.iloc[:140])
        self.write("test_df", df.iloc[140:])


class ModelTrainer(RedisStage):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    @property
    def name(self):
        return "ModelTrainer"

    def run(self, *args, **kwargs):
        train_df = self.read("train_df")
        model = RandomForestClassifier(n_estimators=50, random_state=0)
        model.fit(train_df.drop(columns="label"), train_df["label"])
        self.write("model", model)


def published_example(**store):
    data_ingestor = DataIngestor(**store)
    data_preprocessor = DataPreprocessor(**store).after(data_ingestor)
    model_trainer = ModelTrainer(**store).after(data_preprocessor)
    pipeline = Pipeline()
    pipeline.add_stages([data_ingestor, data_preprocessor, model_trainer])
    return pipeline


def check_model(read):
    test_df = read("test_df")
    score = read("model").score(test_df.drop(columns="label"), test_df["label"])
    assert score > 0.85


@pytest.mark.redis
def test_the_published_redis_example_runs_on_two_cores(redis_url):
    redis_instance = redis.Redis.from_url(redis_url)
    redis_instance.flushdb()
    run = published_example(redis_instance=redis_instance).start(num_cores=2)
    assert run.ok and list(run.status) == ["DataIngestor", "DataPreprocessor", "ModelTrainer"]
    check_model(RedisStore(redis_url).get)


def test_the_same_with_diskcache(tmp_path):
    cache = diskcache.Cache(str(tmp_path / "cache"))
    run = published_example_disk(cache).start(num_cores=2)
    assert run.ok
    check_model(DiskCacheStore(cache).get)


def published_example_disk(cache):
    classes = []
    for base in (DataIngestor, DataPreprocessor, ModelTrainer):
        classes.append(type(base.__name__, (DiskCacheStage,), {
            "run": base.run, "name": base.name}))
    first, second, third = (c(cache=cache) for c in classes)
    return Pipeline().add_stages(first, second.after(first), third.after(second))


@pytest.mark.redis
def test_unreachable_redis_is_one_clear_error_before_anything_runs():
    ran = []

    class Probe(RedisStage):
        def run(self):
            ran.append(1)

    pipeline = Pipeline().add_stages(Probe(redis_instance=redis.Redis(port=free_port())))
    with pytest.raises(ConnectionError, match="cannot reach Redis at"):
        pipeline.start()
    assert ran == [] and pipeline.last_run is None


@pytest.mark.redis
def test_redis_store_from_a_url_with_password_and_keys(redis_url):
    store = RedisStore(redis_url)
    store.set("a/1", {"x": 1})
    assert store.get("a/1") == {"x": 1} and "a/1" in store and store.keys("a/") == ["a/1"]
    secret = RedisStore("rediss://:hunter2@example.invalid:6380/0")
    assert "hunter2" not in secret.where() and "hunter2" not in repr(secret)


def test_disk_store_is_private_atomic_and_reports_bad_values(tmp_path):
    store = DiskStore(tmp_path / "store")
    store.set("model", [1, 2, 3])
    assert stat.S_IMODE(os.stat(tmp_path / "store").st_mode) == 0o700
    assert store.get("model") == [1, 2, 3] and store.keys() == ["model"]
    with pytest.raises(TypeError, match="cannot store key 'lock'"):
        store.set("lock", __import__("threading").Lock())
    with pytest.raises(KeyError):
        store.get("missing")


def test_a_worker_killed_mid_write_leaves_earlier_artifacts_intact(tmp_path):
    store = DiskStore(tmp_path / "store")

    class Slow:
        def __reduce__(self):
            time.sleep(30)  # the worker is killed while this value is being written

    class Writer(Stage):
        def run(self):
            self.write("artifact", "first version")

    class Killed(Stage):
        def run(self):
            self.write("artifact", ["second version", Slow()])

    pipeline = Pipeline(store=store).add_stages(Killed().after(Writer()).options(timeout=1))
    run = pipeline.start(num_cores=2, raise_on_error=False)
    assert run.status["Killed"] is StageStatus.FAILED and "timed out" in run.errors["Killed"]
    assert store.get("artifact") == "first version"
    assert [k for k in store.keys("artifact") if not k.startswith("pydags-cache/")] == ["artifact"]


def test_class_stages_share_the_pipeline_store_and_missing_keys_are_named(tmp_path):
    class Produce(Stage):
        def run(self):
            self.write("numbers", [1, 2, 3])

    class Consume(Stage):
        def run(self):
            return sum(self.read("numbers"))

    class Lost(Stage):
        def run(self):
            return self.read("never-written")

    store = DiskStore(tmp_path)
    run = Pipeline(store=store).add_stages(Consume().after(Produce()), Lost()).start(
        num_cores=2, raise_on_error=False)
    assert run.results["Consume"] == 6
    assert "stage 'Lost' read key 'never-written'" in run.errors["Lost"]
    lost = Lost()
    lost._store = store
    with pytest.raises(MissingKey, match="write it in an earlier stage"):
        lost.run()


def test_caching_reruns_only_the_changed_stage_and_its_descendants(tmp_path):
    namespace: dict = {}
    source = """
from pydags import stage

@stage
def load():
    return [1, 2, 3]

@stage
def double(rows):
    return [r * FACTOR for r in rows]

@stage
def total(rows):
    return sum(rows)

@stage
def count(rows):
    return len(rows)
"""

    def build(factor):
        exec(source.replace("FACTOR", str(factor)), namespace)
        raw = namespace["load"]()
        return Pipeline("cached", store=DiskStore(tmp_path)).add_stages(
            namespace["total"](namespace["double"](raw)), namespace["count"](raw))

    first = build(2).start(cache=True)
    assert set(first.status.values()) == {StageStatus.DONE}
    again = build(2).start(cache=True)
    assert set(again.status.values()) == {StageStatus.CACHED}
    assert again.results == first.results
    changed = build(3).start(cache=True)
    assert changed.status == {"load": StageStatus.CACHED, "double": StageStatus.DONE,
                              "count": StageStatus.CACHED, "total": StageStatus.DONE}
    assert changed.results["total"] == 18
    pipeline = build(3)
    assert pipeline.clear_cache() == 6  # four results of the first run, two of the third
    assert set(pipeline.start(cache=True).status.values()) == {StageStatus.DONE}


def test_a_01_pipeline_given_redis_cache_keeps_artifacts_there(redis_url):
    class Produce(Stage):
        def run(self):
            self.write("answer", 42)

    client = redis.Redis.from_url(redis_url)
    pipeline = Pipeline(redis_cache=client)
    pipeline.add_stage(Produce())
    assert isinstance(pipeline.store, RedisStore)
    pipeline.start(num_cores=2)
    assert pipeline.store.get("answer") == 42


def test_redis_clear_cache_takes_a_pipeline_name_literally(redis_url):
    @stage
    def one():
        return 1

    store = RedisStore(redis_url)
    Pipeline("exp[1]", store=store).add_stages(one()).start(cache=True)
    Pipeline("exp1", store=store).add_stages(one()).start(cache=True)
    assert Pipeline("exp[1]", store=store).clear_cache() == 1
    again = Pipeline("exp1", store=store).add_stages(one()).start(cache=True)
    assert again.status["one"] is StageStatus.CACHED


def test_unreachable_redis_with_cache_is_one_clear_error_before_anything_runs():
    @stage
    def one():
        return 1

    ran = []
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConnectionError, match="cannot reach Redis"):
        Pipeline("c", store=store).add_stages(one()).start(cache=True, on_event=ran.append)
    assert not ran
