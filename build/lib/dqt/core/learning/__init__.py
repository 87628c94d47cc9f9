"""Learning: the Q-Transformer (`model`), its greedy decode (`decode`), the per-dimension targets
and losses (`loss`), one update with its EMA target and LR schedule (`learner`, `schedules`),
the replay buffer (`replay`) and the action bins (`bins`)."""
