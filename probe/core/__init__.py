"""What every stage shares: the user-error type, atomic writes, safe loading, building from
config nodes, the device, where the shipped configs live and SIGTERM as a clean stop
(`preempt`). Imports nothing else of probe."""
