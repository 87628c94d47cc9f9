from dqt.cli import entry

entry()
