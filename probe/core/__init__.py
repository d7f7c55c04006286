"""What every stage shares: the user-error type, atomic writes, safe loading, building from
config nodes, the device, where the shipped configs live, the one image-to-RGB decode
(`images`, used by every dataset loader and transform) and SIGTERM as a clean stop
(`preempt`). Imports nothing else of probe."""
