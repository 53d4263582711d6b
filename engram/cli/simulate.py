"""`engram simulate`: a synthetic agent runs the loop against planted truth.

The agent gets tasks (the `engram generate` topics' unseen task phrasings), asks
`recommend`, chooses, draws the outcome from the planted success rate of what it chose,
records the outcome through the write path (citing the recommendation_id), and the
warehouse is rebuilt every M tasks; between builds the read-your-writes overlay already
counts the new outcomes. Three agents run on copies of the same warehouse with the same
task sequence: `explore` and `best` follow the first recommendation of that strategy,
`random` picks uniformly among the same plausible candidates the strategies choose from
(recommend's pool: a memory that retrieves but does not rank). Regret per task = the
planted success of the task topic's best pattern minus that of the chosen one.

Planted success of a pattern for a task of topic T (truth.json and its quality model):
the middle of its role's range (best 0.875, poor 0.15, normal 0.475), the end of its line
for improving (0.85) and declining (0.25) patterns, capped at `cross_topic_cap` (0.4)
when the pattern belongs to another topic. truth.json lists the topic of every role but
`normal`, so normal patterns count as 0.4 everywhere (their on-topic mean is 0.475).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from engram.query.memory import Memory
from engram.query.recommend import MIN_POOL, POOL_FACTOR
from engram.query.record import record_outcome
from engram.query.serving import current
from engram.query.udf import QueryEmbedder

AGENTS = ("explore", "best", "random")


@dataclass
class PlantedTruth:
    """Planted success per (pattern, topic) and each topic's unseen task texts."""

    topics: list[str]
    tasks: dict[str, list[str]]
    role_mean: dict[str, float]  # pattern -> planted mean of its role (own topic)
    topic_of: dict[str, str]  # pattern -> its topic (roles other than normal)
    cross_cap: float
    normal_mean: float

    @classmethod
    def load(cls, path: Path) -> PlantedTruth:
        truth = orjson.loads(Path(path).read_bytes())
        model = truth["quality_model"]
        means = {
            "best_pattern_ids": float(np.mean(model["best_base"])),
            "poor_pattern_ids": float(np.mean(model["poor_base"])),
            "improving_pattern_ids": float(model["improving_line"][1]),
            "declining_pattern_ids": float(model["declining_line"][1]),
        }
        role_mean: dict[str, float] = {}
        topic_of: dict[str, str] = {}
        for topic in truth["topics"]:
            for key, mean in means.items():
                for pid in topic[key]:
                    role_mean[pid], topic_of[pid] = mean, topic["slug"]
        return cls(
            topics=[t["slug"] for t in truth["topics"] if t["unseen_tasks"]],
            tasks={t["slug"]: list(t["unseen_tasks"]) for t in truth["topics"]},
            role_mean=role_mean,
            topic_of=topic_of,
            cross_cap=float(model["cross_topic_cap"]),
            normal_mean=float(np.mean(model["normal_base"])),
        )

    def success(self, pattern_id: str, topic: str) -> float:
        """Planted success probability of using `pattern_id` on a task of `topic`."""
        if pattern_id not in self.topic_of:
            return min(self.normal_mean, self.cross_cap)
        mean = self.role_mean[pattern_id]
        return mean if self.topic_of[pattern_id] == topic else min(mean, self.cross_cap)

    def best_success(self, topic: str) -> float:
        own = [m for p, m in self.role_mean.items() if self.topic_of[p] == topic]
        return max([*own, min(self.normal_mean, self.cross_cap)])


@dataclass
class SimulationResult:
    tasks: int
    rebuild_every: int
    regret: dict[str, np.ndarray]  # agent -> cumulative regret after each task
    mean_outcome: dict[str, float]
    seconds: dict[str, float]
    builds: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "rebuild_every": self.rebuild_every,
            "cumulative_regret": {a: r.round(4).tolist() for a, r in self.regret.items()},
            "final_regret": {a: float(r[-1]) for a, r in self.regret.items()},
            "mean_outcome": self.mean_outcome,
            "seconds": self.seconds,
            "builds": self.builds,
        }

    def table(self, checkpoints: int = 5) -> str:
        """Cumulative regret at a few points along the run, per agent."""
        from engram.render import format_table

        points = sorted(
            {max(1, round(self.tasks * i / checkpoints)) for i in range(1, checkpoints + 1)}
        )
        rows = [[a, *[float(self.regret[a][p - 1]) for p in points]] for a in self.regret]
        return format_table(["agent", *[f"after {p}" for p in points]], rows)


def run_agent(
    db: Path,
    truth: PlantedTruth,
    sequence: list[tuple[str, str]],
    agent: str,
    *,
    k: int,
    seed: int,
    rebuild_every: int,
    rebuild: Callable[[Path], None],
    embedder: QueryEmbedder,
    on_task: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, float, int]:
    """One agent through the task sequence on warehouse `db`: (cumulative regret,
    mean outcome, builds)."""
    rng = np.random.default_rng([seed, AGENTS.index(agent)])
    pool = max(POOL_FACTOR * k, MIN_POOL)
    regret = np.zeros(len(sequence))
    outcomes = []
    builds = 0
    memory = Memory(db, embedder=embedder)
    overlay = memory.overlay
    build_id = memory.copy.build_id if memory.copy else None
    try:
        total = 0.0
        for n, (topic, task) in enumerate(sequence, start=1):
            if agent == "random":  # the whole pool the strategies choose from, shown by best
                advice = memory.recommend(task, pool, strategy="best", seed=0)
            else:
                advice = memory.recommend(task, k, strategy=agent, seed=int(rng.integers(2**31)))
            shown = advice.patterns["pattern_id"].tolist()
            if not shown:
                raise RuntimeError(f"no candidates for task {task!r}")
            chosen = shown[int(rng.integers(len(shown)))] if agent == "random" else shown[0]
            p = truth.success(chosen, topic)
            quality = float(rng.random() < p)
            outcomes.append(quality)
            total += truth.best_success(topic) - p
            regret[n - 1] = total
            record_outcome(
                db, chosen, quality, task=task, recommendation_id=advice.recommendation_id
            )
            if rebuild_every and n % rebuild_every == 0 and n < len(sequence):
                memory.close()
                rebuild(db)
                builds += 1
                memory = Memory(db, embedder=embedder)
                memory.overlay = overlay
                copy = current(db)
                build_id = copy.build_id if copy else build_id
            if on_task:
                on_task(1)
    finally:
        memory.close()
    return regret, float(np.mean(outcomes)), builds


def simulate(
    base_db: Path,
    truth_path: Path,
    workdir: Path,
    *,
    tasks: int = 150,
    rebuild_every: int = 50,
    k: int = 5,
    seed: int = 0,
    agents: tuple[str, ...] = AGENTS,
    rebuild: Callable[[Path], None] | None = None,
    on_task: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run each agent on its own copy of the built warehouse `base_db` (its folder is
    copied, serving copies included) with the same task sequence."""
    truth = PlantedTruth.load(truth_path)
    rng = np.random.default_rng(seed)
    sequence = []
    for _ in range(tasks):
        topic = truth.topics[int(rng.integers(len(truth.topics)))]
        texts = truth.tasks[topic]
        sequence.append((topic, texts[int(rng.integers(len(texts)))]))
    if rebuild is None:
        from engram.build import build

        def rebuild(db: Path) -> None:
            build(db, capture=True)

    embedder = QueryEmbedder()
    result = SimulationResult(tasks, rebuild_every, {}, {}, {})
    for agent in agents:
        folder = workdir / agent
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(Path(base_db).parent, folder)
        started = time.perf_counter()
        regret, mean, builds = run_agent(
            folder / Path(base_db).name,
            truth,
            sequence,
            agent,
            k=k,
            seed=seed,
            rebuild_every=rebuild_every,
            rebuild=rebuild,
            embedder=embedder,
            on_task=on_task,
        )
        result.regret[agent] = regret
        result.mean_outcome[agent] = mean
        result.seconds[agent] = round(time.perf_counter() - started, 2)
        result.builds += builds
    return result


def plot(result: SimulationResult, path: Path) -> Path:
    """Cumulative regret per agent as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, result.tasks + 1)
    for agent, regret in result.regret.items():
        axes.plot(steps, regret, label=agent)
    if result.rebuild_every:
        for x in range(result.rebuild_every, result.tasks, result.rebuild_every):
            axes.axvline(x, color="grey", linewidth=0.5, linestyle=":")
    axes.set_xlabel("task")
    axes.set_ylabel("cumulative regret (planted success)")
    axes.set_title("engram simulate: regret of the agent loop (dotted: rebuilds)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
