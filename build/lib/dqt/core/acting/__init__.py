"""Acting: the agent process (`actor`) and its exploration loop (`rollout`), the evaluation
process (`evaluator`), and the tasks (`envs`); the reward noise they apply is `core.noise`."""
