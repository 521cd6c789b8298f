"""Where commands run: executors (local, netns, SSH), processes, host keys."""
