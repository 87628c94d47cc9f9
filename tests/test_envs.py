"""Task layer: names, toy-reach, MetaWorld envs and the evaluation convention."""

import numpy as np
import pytest

from dqt.core.acting.envs import (
    PAPER_TASKS,
    TASKS,
    ToyReachEnv,
    canonical_task,
    episode_success,
    make_env,
    move_to_goal_policy,
    run_eval_episodes,
)
from dqt.core.config import ConfigError

# --- task names -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["door-unlock", "mw-door-unlock", "door-unlock-v3", " Door_Unlock "])
def test_canonical_task_aliases(name):
    assert canonical_task(name) == "door-unlock-v3"


def test_canonical_task_toy_and_paper_tasks():
    assert canonical_task("toy-reach") == "toy-reach"
    assert all(canonical_task(t) == t for t in PAPER_TASKS)
    assert set(PAPER_TASKS) < set(TASKS) and "toy-reach" in TASKS


def test_tasks_come_from_the_registered_families():
    import gymnasium as gym
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    gym_tasks = {f"gym:{k}" for k in gym.registry if not k.startswith("Meta-World/")}
    assert set(TASKS) == set(ALL_V3_ENVIRONMENTS) | {"toy-reach"} | gym_tasks
    assert "gym:Pendulum-v1" in TASKS


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("door-unlok", "door-unlock-v3"),
        ("door-unlock-v2", "door-unlock-v3"),
        ("hamer", "hammer-v3"),
        ("toy-rech", "toy-reach"),
    ],
)
def test_unknown_task_suggests_close_match(name, suggestion):
    with pytest.raises(ConfigError) as err:
        canonical_task(name)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"unknown task '{name}' (did you mean '{suggestion}'?)")


def test_unknown_task_without_close_match():
    with pytest.raises(ConfigError, match=r"^unknown task 'xyzzy'; expected a task of a registered env family "
                                          r"\(toy-reach, metaworld, gymnasium: e.g. 'toy-reach', 'door-unlock-v3', "
                                          r"'gym:Pendulum-v1'\)$"):
        canonical_task("xyzzy")


def test_make_env_rejects_bad_names_and_lengths():
    with pytest.raises(ConfigError):
        make_env("no-such-task", seed=0)
    with pytest.raises(ConfigError):
        make_env("toy-reach", seed=0, episode_length=-1)


# --- toy-reach ------------------------------------------------------------------------


def rollout(env, policy, seed_actions=0):
    """One episode; returns observations, rewards, success flags and the end flags."""
    rng = np.random.default_rng(seed_actions)
    obs, _ = env.reset()
    observations, rewards, flags = [obs], [], []
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs, rng))
        observations.append(obs)
        rewards.append(reward)
        flags.append(info["success"])
        if terminated or truncated:
            return np.array(observations), np.array(rewards), flags, terminated, truncated


def random_policy(obs, rng):
    return rng.uniform(-1, 1, 4).astype(np.float32)


def scripted_policy(obs, rng):
    return move_to_goal_policy(obs)


def test_toy_reach_shapes_bounds_and_truncation():
    env = make_env("toy-reach", seed=0)
    assert env.observation_space.shape == (8,) and env.action_space.shape == (4,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, rewards, flags, terminated, truncated = rollout(env, random_policy)
    assert obs.dtype == np.float32 and obs.shape[1] == 8
    assert np.all(np.abs(obs) <= 1.0)
    assert 25 <= len(rewards) <= 40 and truncated and not terminated
    assert np.all((rewards >= 0) & (rewards <= 1))
    with pytest.raises(RuntimeError):  # stepping a finished episode is a bug upstream
        env.step(np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        env.reset()
        env.step(np.zeros(3, np.float32))


def test_toy_reach_clips_actions_and_moves_by_fixed_fraction():
    env = ToyReachEnv(seed=0)
    obs, _ = env.reset()
    nxt, *_ = env.step(np.full(4, 5.0, np.float32))  # out of range: acts like +1
    expected = np.minimum(obs[:4] + env.step_size, 1.0)
    np.testing.assert_allclose(nxt[:4], expected, atol=1e-6)
    np.testing.assert_array_equal(nxt[4:], obs[4:])  # the goal does not move


def test_toy_reach_seed_determinism():
    a = rollout(make_env("toy-reach", seed=3), random_policy)
    b = rollout(make_env("toy-reach", seed=3), random_policy)
    c = rollout(make_env("toy-reach", seed=4), random_policy)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0][0], c[0][0])
    # reset(seed=...) follows the gymnasium contract as well.
    env = make_env("toy-reach", seed=99)
    np.testing.assert_array_equal(env.reset(seed=3)[0], a[0][0])


def test_toy_reach_episodes_differ_within_a_seed():
    env = make_env("toy-reach", seed=0)
    firsts = [env.reset()[0] for _ in range(5)]
    assert len({f.tobytes() for f in firsts}) == 5


def test_toy_reach_scripted_policy_succeeds_random_fails():
    env = make_env("toy-reach", seed=0)
    scripted = run_eval_episodes(env, move_to_goal_policy, episodes=100, stop_on_success=False)
    rng = np.random.default_rng(0)
    rand = run_eval_episodes(env, lambda o: random_policy(o, rng), episodes=100, stop_on_success=False)
    assert scripted["success_rate"] >= 0.95
    assert rand["success_rate"] < 0.2
    assert scripted["return"] > rand["return"] + 5  # the dense reward separates them too


def test_toy_reach_coarse_bins_suffice():
    """With K = 11 bins the scripted policy's snapped actions still reach the goal."""
    bins = np.linspace(-1, 1, 11)

    def snapped(obs):
        a = move_to_goal_policy(obs)
        return bins[np.abs(a[:, None] - bins[None]).argmin(1)]

    assert run_eval_episodes(make_env("toy-reach", seed=1), snapped, episodes=50)["success_rate"] >= 0.95


def test_toy_reach_terminate_on_success():
    env = make_env("toy-reach", seed=0, terminate_on_success=True)
    _, rewards, flags, terminated, truncated = rollout(env, scripted_policy)
    assert terminated and not truncated
    assert flags[-1] == 1.0 and not any(flags[:-1])
    assert len(rewards) <= 8  # the goal is at most 2 / step_size full-speed steps away


def test_toy_reach_episode_length_caps():
    _, rewards, _, _, truncated = rollout(make_env("toy-reach", seed=0, episode_length=5), random_policy)
    assert len(rewards) == 5 and truncated


# --- evaluation convention -------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([0.0] * 10, False),
        ([0.0, 0.0, 1.0, 0.0, 0.0], True),  # success at any step counts, not only the last
        ([0.0, 0.0, 0.0, 1.0], True),
        ([1.0], True),
        ([False, True, False], True),
        ([], False),
        ([0.0, 0.5, 0.99], False),  # MetaWorld terminates on success == 1.0 exactly
    ],
)
def test_episode_success_follows_metaworld_evaluation(flags, expected):
    assert episode_success(flags) is expected


def test_run_eval_episodes_stops_at_first_success_like_metaworld():
    env = make_env("toy-reach", seed=0)
    stopped = run_eval_episodes(env, move_to_goal_policy, episodes=10, stop_on_success=True)
    full = run_eval_episodes(
        make_env("toy-reach", seed=0), move_to_goal_policy, episodes=10, stop_on_success=False
    )
    assert stopped["success_rate"] == full["success_rate"] == 1.0
    assert stopped["length"] <= 8 and full["length"] == 30
    assert stopped["return"] < full["return"]


# --- MetaWorld --------------------------------------------------------------------------


def test_metaworld_shapes_and_full_length_truncation():
    env = make_env("door-unlock-v3", seed=0)
    assert env.observation_space.shape == (39,) and env.action_space.shape == (4,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (39,)
    assert env.observation_space.contains(obs)
    steps = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert obs.shape == (39,) and isinstance(reward, float) and "success" in info
        if terminated or truncated:
            break
    assert steps == 500 and truncated and not terminated


def test_metaworld_episode_length_caps():
    env = make_env("door-unlock-v3", seed=0, episode_length=20)
    env.reset()
    results = [env.step(env.action_space.sample()) for _ in range(20)]
    ends = [r[2:4] for r in results]
    assert ends[-1] == (False, True) and not any(t or u for t, u in ends[:-1])
    # The cap sits under MetaWorld's RecordEpisodeStatistics, so the episode is recorded.
    assert results[-1][4]["episode"]["l"] == 20
    # reset(seed=...) is honoured although MetaWorld's own reset ignores its seed.
    np.testing.assert_array_equal(env.reset(seed=11)[0], env.reset(seed=11)[0])
    with pytest.raises(ConfigError):
        make_env("door-unlock-v3", seed=0, episode_length=501)


def test_metaworld_seeds():
    """Same seed: same first episode; other seed: other task variant."""

    def first_episode(env):
        rng = np.random.default_rng(0)
        first = env.reset()[0]
        return first, np.array([env.step(rng.uniform(-1, 1, 4).astype(np.float32))[0] for _ in range(30)])

    a_first, a_steps = first_episode(make_env("door-unlock", seed=2))
    b_first, b_steps = first_episode(make_env("door-unlock", seed=2))
    np.testing.assert_array_equal(a_first, b_first)
    np.testing.assert_array_equal(a_steps, b_steps)
    c_first = make_env("door-unlock", seed=3).reset()[0]
    # The seed moves the task variant: the goal (last 3 dims) or the object (dims 4:7).
    assert (
        np.abs(a_first[-3:] - c_first[-3:]).max() > 1e-3 or np.abs(a_first[4:7] - c_first[4:7]).max() > 1e-3
    )


@pytest.mark.filterwarnings("ignore:Constant")  # MetaWorld's scripted policies warn on clipping
def test_run_eval_episodes_matches_metaworld_evaluation():
    """Cross-check against metaworld.evaluation.evaluation itself, on the same episodes."""
    import gymnasium as gym
    from metaworld.evaluation import evaluation
    from metaworld.policies import SawyerDoorUnlockV3Policy

    expert = SawyerDoorUnlockV3Policy()

    def noisy_expert():  # succeeds in some capped episodes only, so the rate is informative
        rng = np.random.default_rng(0)
        return lambda obs: np.clip(expert.get_action(obs) + rng.normal(0, 1.5, 4), -1, 1)

    class Agent:
        def __init__(self, policy):
            self.policy = policy

        def eval_action(self, obs):
            return np.stack([self.policy(o) for o in obs])

        def reset(self, mask):
            pass

    ours = run_eval_episodes(make_env("door-unlock", seed=0, episode_length=50), noisy_expert(), 8,
                             stop_on_success=True, success="any-step")
    vec = gym.vector.SyncVectorEnv(
        [lambda: make_env("door-unlock", seed=0, episode_length=50).env],  # float64 obs, else equal
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    success_rate, mean_return, *_ = evaluation(Agent(noisy_expert()), vec, num_episodes=8)
    assert 0.0 < ours["success_rate"] < 1.0
    assert ours["success_rate"] == success_rate
    assert ours["return"] == pytest.approx(mean_return, rel=1e-5)
