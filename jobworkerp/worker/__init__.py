"""The worker side: channels pull jobs, the executor runs each one through a runner host."""
