"""The lab's controller: the dyno manager (applies plans, reconciles with the engine, runs timers) and its API."""
