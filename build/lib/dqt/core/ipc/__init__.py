"""What a run's processes share: the typed messages they send (`messages`), the shared-memory
episode slots and weight board (`transport`), and child-process helpers (`procutil`)."""
