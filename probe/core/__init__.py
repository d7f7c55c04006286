"""What every stage shares: the user-error type, atomic writes, safe loading, building from
config nodes, the device, where the shipped configs live, the one image-to-RGB decode
(`images`, used by every dataset loader and transform), SIGTERM as a clean stop
(`preempt`), and the token cache's grid maths and disk check (`tokens`, `space`), which the
feature stage and the launcher's dry run share. Imports nothing else of probe."""
