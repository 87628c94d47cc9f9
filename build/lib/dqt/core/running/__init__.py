"""Running a job: `train` (`trainer`), the learner loop (`learner_loop`), the child processes
(`agent_pool`), checkpoints and resume (`checkpoint`, `resume`), metric windows and progress;
what the processes say and share is `core.ipc`."""
