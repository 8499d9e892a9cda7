"""What the running kernel holds and can do: object info, features, bpffs/tracefs, syscall names."""
