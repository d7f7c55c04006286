"""What every stage shares: the user-error type, atomic writes, safe loading, building from
config nodes, the device and where the shipped configs live. Imports nothing else of probe."""
