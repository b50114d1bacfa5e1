"""`attnrepro sweep --runs-per-gpu N`: the local executor packs small runs onto GPUs (faked here), N at most
on each, spreading them over the GPUs first; a multi-GPU run takes distinct GPUs."""

from collections import Counter

import pytest
import torch
import yaml

from harness import sweep as sweep_module


class FakeJob:
    """Finishes after a few polls; counts the runs on each GPU while it lives."""

    def __init__(self, cluster, gpus: tuple[int, ...], polls: int):
        self.cluster, self.gpus, self.polls, self.job_id = cluster, gpus, polls, str(len(cluster.started))
        cluster.start(gpus)

    def done(self) -> bool:
        self.polls -= 1
        return self.polls <= 0

    def results(self):  # submitit's Job API: one result per task
        self.cluster.stop(self.gpus)
        return [{}]

    result = lambda self: self.results()[0]  # noqa: E731


class FakeCluster:
    def __init__(self):
        self.active, self.peak, self.started = Counter(), Counter(), []

    def start(self, gpus):
        assert len(set(gpus)) == len(gpus), f"a run got the same GPU twice: {gpus}"
        self.started.append(gpus)
        self.active.update(gpus)
        for gpu in gpus:
            self.peak[gpu] = max(self.peak[gpu], self.active[gpu])

    def stop(self, gpus):
        self.active.subtract(gpus)


@pytest.fixture
def two_fake_gpus(monkeypatch):
    cluster = FakeCluster()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sweep_module.time, "sleep", lambda seconds: None)

    class Executor:
        def __init__(self, gpus):
            self.gpus = tuple(gpus)

        def submit(self, job):
            return FakeJob(cluster, self.gpus, polls=3 + len(cluster.started) % 4)

    monkeypatch.setattr(sweep_module, "_executor", lambda kind, folder, spec, settings, gpus: Executor(gpus))
    return cluster


def _plan(tmp_path, seeds: int, devices: int = 1):
    plan = {"name": "packed", "out": str(tmp_path / "out"), "runs": [
        {"reproductions": ["bahdanau2014", "cho2014"], "presets": ["tiny"], "seeds": list(range(1, seeds + 1)),
         "devices": devices}]}
    path = tmp_path / "packed.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


@pytest.mark.parametrize("runs_per_gpu", [1, 3])
def test_local_executor_packs_n_runs_per_gpu_and_never_more(tmp_path, two_fake_gpus, runs_per_gpu):
    status = sweep_module.sweep(_plan(tmp_path, seeds=7), executor="local", runs_per_gpu=runs_per_gpu)
    assert len(status) == 14 and all(s["state"] == "done" for s in status.values())
    assert len(two_fake_gpus.started) == 14
    assert two_fake_gpus.peak == Counter({0: runs_per_gpu, 1: runs_per_gpu})  # full packing, never over
    assert set(two_fake_gpus.active.values()) == {0}
    assert two_fake_gpus.started[:2] == [(0,), (1,)]  # the first runs spread over the GPUs


def test_multi_gpu_runs_take_distinct_gpus_when_packed(tmp_path, two_fake_gpus):
    status = sweep_module.sweep(_plan(tmp_path, seeds=3, devices=2), executor="local", runs_per_gpu=2)
    assert all(s["state"] == "done" for s in status.values())
    assert all(sorted(gpus) == [0, 1] for gpus in two_fake_gpus.started)
    assert two_fake_gpus.peak == Counter({0: 2, 1: 2})


def test_runs_per_gpu_must_be_positive(tmp_path):
    with pytest.raises(sweep_module.PlanError, match="--runs-per-gpu"):
        sweep_module.sweep(_plan(tmp_path, seeds=1), runs_per_gpu=0)
